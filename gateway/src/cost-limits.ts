// Static limits checked before anything executes: tokens while parsing, then aliases,
// directives and the operation's cost before the specification's validation rules
// (some of which are quadratic in the size of the document) get to run.
import { maxAliasesRule } from "@escape.tech/graphql-armor-max-aliases";
import { maxDirectivesRule } from "@escape.tech/graphql-armor-max-directives";
import {
  type DocumentNode,
  type ExecutionArgs,
  GraphQLError,
  type GraphQLSchema,
  Kind,
  type OperationDefinitionNode,
  type ParseOptions,
  type SelectionSetNode,
  type Source,
  validate,
  type ValidationContext,
  type ValidationRule,
  type ValueNode,
  visit,
} from "graphql";
import { Parser } from "graphql/language/parser.js";
import { type ComplexityEstimator, createComplexityRule, getComplexity } from "graphql-query-complexity";
import type { Plugin } from "graphql-yoga";

import type { Config } from "../../common/config.ts";
import { PROCESSING_STATUSES, SYSTEMS } from "../../common/contract.ts";

/** What one call to a store (PostgreSQL, Redis, MongoDB, RabbitMQ) adds to a field's cost. */
export const STORE_CALL_COST = 10;
/** The page size a connection or list answers when `first` is not given. */
const DEFAULT_PAGE = 20;

/**
 * Store calls a field makes each time it resolves, by `Type.field`. Every field costs 1
 * plus `STORE_CALL_COST` per store call plus its selection times the number of items it
 * returns (see `LIST_SIZE`). Listed in the README's security section: keep them in step.
 */
export const STORE_CALLS: Readonly<Record<string, number>> = {
  // Per system: a Redis GET of the cursor and a PostgreSQL count of the rows after it.
  "Query.cursors": 2 * SYSTEMS.length,
  // Queue checks, the Redis counters, an endput groupBy, per-system counts and cursors.
  "Query.pipelineStats": 12,
  "Query.orders": 2,
  "Query.endputOrders": 2,
  "Query.messages": 1,
  "Query.messageHistory": 1,
  "Query.deadLetters": 1,
  // The set of group names, then one pipeline over the groups.
  "Query.deadLetterGroups": 2,
  "Mutation.publishPending": 4,
  "Mutation.resetCursor": 4,
  "Mutation.seedOrders": 2,
  "Mutation.redriveDeadLetters": 4,
  "Mutation.discardDeadLetters": 4,
  "Mutation.restoreDeadLetterGroups": 4,
};

type ListSize = (args: Record<string, unknown>, historyDocuments: number) => number;
/** Page sizes past this are refused by the resolvers (BAD_USER_INPUT), so they are costed at it. */
const MAX_PAGE = 500;
const page: ListSize = (args) => Math.min(MAX_PAGE, Math.max(1, Number(args.first ?? args.last ?? DEFAULT_PAGE) || DEFAULT_PAGE));
/** The only arguments a list size reads: a cost depends on no other argument's value. */
const SIZE_ARGUMENTS = new Set(["first", "last"]);
const history: ListSize = (_args, historyDocuments) => historyDocuments;

/** How many items a list field returns, at most or as expected: its selection is counted that many times. */
export const LIST_SIZE: Readonly<Record<string, ListSize>> = {
  "Query.orders": page,
  "Query.endputOrders": page,
  "Query.messages": page,
  "Query.deadLetters": page,
  // One group per system and reason: max-attempts, unknown and the rejection kinds.
  "Query.deadLetterGroups": () => (SYSTEMS.length + 1) * 9,
  "DiscardResult.letters": () => 100,
  "Query.cursors": () => SYSTEMS.length,
  // One document per attempt: up to MAX_ATTEMPTS per round.
  "Query.messageHistory": history,
  "Order.history": history,
  "PipelineStats.queues": () => 8,
  "PipelineStats.systems": () => SYSTEMS.length,
  "PipelineStats.attempts": () => PROCESSING_STATUSES.length,
  "SystemStats.attempts": () => PROCESSING_STATUSES.length,
};

export function fieldCostEstimator(historyDocuments: number): ComplexityEstimator {
  return ({ type, field, args, childComplexity }) => {
    const key = `${type.name}.${field.name}`;
    const items = LIST_SIZE[key]?.(args, historyDocuments) ?? 1;
    return 1 + STORE_CALL_COST * (STORE_CALLS[key] ?? 0) + items * childComplexity;
  };
}

/** The cost of the operation `operationName` (or the only one) in `document`. */
export function operationCost(
  schema: GraphQLSchema,
  document: DocumentNode,
  config: Config,
  variables: Record<string, unknown> = {},
  operationName?: string,
): number {
  return getComplexity({
    schema,
    query: document,
    variables,
    operationName,
    estimators: [fieldCostEstimator(config.retry.maxAttempts)],
  });
}

export type LimitCode = "QUERY_TOO_COSTLY" | "TOO_MANY_TOKENS" | "TOO_MANY_ALIASES" | "TOO_MANY_DIRECTIVES";
const LIMIT_CODES = new Set<string>(["QUERY_TOO_COSTLY", "TOO_MANY_TOKENS", "TOO_MANY_ALIASES", "TOO_MANY_DIRECTIVES"]);

const refusal = (code: LimitCode, message: string, extra: Record<string, unknown> = {}) =>
  new GraphQLError(message, { extensions: { code, ...extra, http: { status: 400, spec: false } } });

/** Fields an operation may expand to, fragments spread where they are used. */
export const MAX_EXPANDED_FIELDS = 2_000;

/**
 * Refuses an operation whose fragments expand it past MAX_EXPANDED_FIELDS fields (a fragment
 * spreading the next twice, 30 levels deep, is 2^30 fields in 30 lines). Runs before the
 * specification's rules, which take tens of milliseconds over such a document.
 */
const expansionRule: ValidationRule = (context) => {
  function count(set: SelectionSetNode | undefined, budget: number, active: Set<string>): number {
    let n = 0;
    for (const sel of set?.selections ?? []) {
      if (n > budget) break;
      if (sel.kind === Kind.FIELD) n += 1 + count(sel.selectionSet, budget - n - 1, active);
      else if (sel.kind === Kind.INLINE_FRAGMENT) n += count(sel.selectionSet, budget - n, active);
      else {
        const name = sel.name.value;
        const fragment = context.getFragment(name);
        if (!fragment || active.has(name)) continue; // unknown or cyclic: the specification's rules say so
        active.add(name);
        n += count(fragment.selectionSet, budget - n, active);
        active.delete(name);
      }
    }
    return n;
  }
  return {
    OperationDefinition(node) {
      if (count(node.selectionSet, MAX_EXPANDED_FIELDS, new Set()) > MAX_EXPANDED_FIELDS)
        context.reportError(
          refusal("QUERY_TOO_COSTLY", `query expands to more than ${MAX_EXPANDED_FIELDS} fields`, {
            maxFields: MAX_EXPANDED_FIELDS,
          }),
        );
    },
  };
};

/** The operation's cost, reported as QUERY_TOO_COSTLY (with the cost) when over `maxCost`. */
function costRule(config: Config, variables: Record<string, unknown> | undefined, operationName?: string): ValidationRule {
  const maxCost = config.gateway.maxCost;
  return (context: ValidationContext) => {
    const inner = createComplexityRule({
      maximumComplexity: maxCost,
      variables,
      operationName,
      // Bounds the walk itself: fragments spread many times over would otherwise be walked each time.
      maxQueryNodes: 10_000,
      estimators: [fieldCostEstimator(config.retry.maxAttempts)],
      createError: (max, actual) =>
        refusal("QUERY_TOO_COSTLY", `query cost ${actual} exceeds the maximum of ${max}`, { cost: actual, maxCost: max }),
    })(context);
    let walked = true;
    return {
      OperationDefinition: {
        enter(node: OperationDefinitionNode) {
          try {
            inner.onOperationDefinitionEnter(node);
          } catch (err) {
            walked = false;
            if (!(err instanceof GraphQLError)) throw err;
            context.reportError(refusal("QUERY_TOO_COSTLY", `query too large to cost: ${err.message}`, { maxCost }));
          }
        },
        leave(node: OperationDefinitionNode) {
          if (walked) inner.onOperationDefinitionLeave(node);
        },
      },
    };
  };
}

interface StaticLimits {
  /** Parses `source`, refusing (TOO_MANY_TOKENS) past GATEWAY_MAX_TOKENS tokens. */
  parse(source: string | Source, options?: ParseOptions): DocumentNode;
  /** Refusals that depend on the document alone: aliases, directives, fields after expansion. */
  checkShape(schema: GraphQLSchema, document: DocumentNode): GraphQLError[];
  /** The cost refusal, which depends on the variables too (`first: $n`). */
  checkCost(
    schema: GraphQLSchema,
    document: DocumentNode,
    variables?: Record<string, unknown>,
    operationName?: string | null,
  ): GraphQLError[];
}

export function createStaticLimits(config: Config): StaticLimits {
  const { maxTokens, maxAliases, maxDirectives } = config.gateway;
  const reject =
    (code: LimitCode, what: string, limit: number) =>
    (ctx: ValidationContext | null, err: GraphQLError): void => {
      const error = refusal(code, `${what}: ${err.message.replace(/^Syntax Error: /, "")}`, { limit });
      if (ctx) ctx.reportError(error);
      else throw error;
    };
  const armour = { exposeLimits: true, propagateOnRejection: false };
  const aliases = maxAliasesRule({
    ...armour,
    n: maxAliases,
    onReject: [reject("TOO_MANY_ALIASES", "too many aliases", maxAliases)],
  });
  const directives = maxDirectivesRule({
    ...armour,
    n: maxDirectives,
    onReject: [reject("TOO_MANY_DIRECTIVES", "too many directives", maxDirectives)],
  });
  // Only this module's own refusals count; anything else these rules notice (an unknown field,
  // a badly typed argument) is left to the specification's rules to report in their words.
  const ours = (errors: readonly GraphQLError[]) => errors.filter((e) => LIMIT_CODES.has(String(e.extensions?.code)));
  return {
    // graphql-js's own limit stops lexing at the first token past it: a megabyte of tokens costs
    // the parser no more than maxTokens of them.
    parse: (source, options) => {
      const parser = new Parser(source, { ...options, maxTokens });
      try {
        return parser.parseDocument();
      } catch (err) {
        if (parser.tokenCount <= maxTokens) throw err;
        throw refusal("TOO_MANY_TOKENS", `too many tokens: the document has more than ${maxTokens}`, { limit: maxTokens });
      }
    },
    checkShape: (schema, document) => ours(validate(schema, document, [aliases, directives, expansionRule])),
    checkCost: (schema, document, variables, operationName) =>
      ours(validate(schema, document, [costRule(config, variables, operationName ?? undefined)])),
  };
}

function variablesIn(value: ValueNode, into: Set<string>): void {
  if (value.kind === Kind.VARIABLE) into.add(value.name.value);
  else if (value.kind === Kind.LIST) for (const v of value.values) variablesIn(v, into);
  else if (value.kind === Kind.OBJECT) for (const f of value.fields) variablesIn(f.value, into);
}

/**
 * The variables an operation's cost can depend on: those in a list size's arguments
 * (SIZE_ARGUMENTS) and in directives (@skip and @include leave fields out of the cost).
 */
export function costVariables(document: DocumentNode): string[] {
  const names = new Set<string>();
  visit(document, {
    Field(node) {
      for (const arg of node.arguments ?? []) if (SIZE_ARGUMENTS.has(arg.name.value)) variablesIn(arg.value, names);
    },
    Directive(node) {
      for (const arg of node.arguments ?? []) variablesIn(arg.value, names);
    },
  });
  return [...names].sort();
}

/**
 * Refuses, before any resolver runs, a document of more than GATEWAY_MAX_TOKENS tokens
 * (while parsing), an operation with more than GATEWAY_MAX_ALIASES aliases or
 * GATEWAY_MAX_DIRECTIVES directives (before the specification's validation rules, some of
 * which are quadratic in the document), and one whose cost with its variables is over
 * GATEWAY_MAX_COST (as execution starts: Yoga caches validation per document, and the cost
 * depends on the variables). Each refusal is a GraphQL error with a code and HTTP status 400
 * (a token refusal is a syntax error: 200 when the client accepts only application/json).
 */
export function useCostLimits(config: Config): Plugin {
  const limits = createStaticLimits(config);
  // Both checks walk the whole document with the schema's type information, which costs a
  // lookup more than the lookup itself; Yoga hands the same DocumentNode for the same text
  // (its parse cache), so each document's results are kept beside it. The shape depends on
  // the document alone. The cost depends on it and on costVariables' values only; a refusal
  // is not kept, because variables that fail coercion turn a refusal into no error (the
  // executor reports them), while "within the limit" holds whatever else they are.
  const shapes = new WeakMap<DocumentNode, GraphQLError[]>();
  const withinLimit = new WeakMap<DocumentNode, { variables: string[]; keys: Set<string> }>();
  const costOf = (args: ExecutionArgs): GraphQLError[] => {
    let known = withinLimit.get(args.document);
    if (!known) withinLimit.set(args.document, (known = { variables: costVariables(args.document), keys: new Set() }));
    const values = args.variableValues ?? {};
    // Absent and null differ (an absent variable takes its default); undefined is neither, so not kept.
    const cacheable = known.variables.every((v) => !Object.hasOwn(values, v) || values[v] !== undefined);
    const key = JSON.stringify([
      args.operationName ?? null,
      ...known.variables.map((v) => (Object.hasOwn(values, v) ? [values[v]] : [])),
    ]);
    if (cacheable && known.keys.has(key)) return [];
    const refused = limits.checkCost(args.schema, args.document, (args.variableValues ?? undefined) as never, args.operationName);
    // Bounded: a client varying `first` cannot grow it past a few hundred keys per document.
    if (cacheable && refused.length === 0 && known.keys.size < 256) known.keys.add(key);
    return refused;
  };
  return {
    onParse({ setParseFn }) {
      setParseFn(limits.parse);
    },
    onValidate({ params, setResult }) {
      let refused = shapes.get(params.documentAST);
      if (!refused) shapes.set(params.documentAST, (refused = limits.checkShape(params.schema, params.documentAST)));
      if (refused.length) setResult(refused);
    },
    onExecute({ args, setResultAndStopExecution }) {
      const refused = costOf(args);
      if (refused.length) setResultAndStopExecution({ errors: refused });
    },
    onSubscribe({ args, setResultAndStopExecution }) {
      const refused = costOf(args);
      if (refused.length) setResultAndStopExecution({ errors: refused });
    },
  };
}
