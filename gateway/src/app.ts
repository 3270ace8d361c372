// The gateway: GraphQL over HTTP (GraphiQL at /graphql), SSE and WebSocket
// subscriptions, health endpoints. Takes every client from main().
import { timingSafeEqual } from "node:crypto";
import http from "node:http";

import { useCSRFPrevention } from "@graphql-yoga/plugin-csrf-prevention";
import { usePrometheus } from "@graphql-yoga/plugin-prometheus";
import DataLoader from "dataloader";
import { type ExecutionArgs, GraphQLError, Kind, type OperationDefinitionNode } from "graphql";
import { useServer } from "graphql-ws/use/ws";
import { createYoga, isAsyncIterable, type Plugin } from "graphql-yoga";
import { WebSocketServer } from "ws";

import type { LogDocument } from "../../common/attempt-log.ts";
import type { System } from "../../common/contract.ts";
import { errorMessage } from "../../common/errors.ts";
import { type Check, runChecks } from "../../common/http-health.ts";
import type { Context, Deps } from "./context.ts";
import { useCostLimits } from "./cost-limits.ts";
import { createDashboardHandler } from "./dashboard.ts";
import { DomainError } from "./errors.ts";
import {
  createGraphiQLAssetsHandler,
  graphiqlOptions,
  headerFromExtensions,
  renderGraphiQL,
  useGraphiQLPolicy,
} from "./graphiql.ts";
import { bodyForYoga, depthLimitRule, readBody, refuseTooLarge } from "./limits.ts";
import { boundedParserCache } from "./parse-cache.ts";
import { useClientLimits } from "./rate-limits.ts";
import { createRequestBudget, type RequestBudget } from "./request-budget.ts";
import { schema } from "./schema/index.ts";

export interface Gateway {
  yoga: ReturnType<typeof createYoga<Record<string, never>, Context>>;
  server: http.Server;
  /**
   * Shuts the servers down in order: stops accepting connections and reports not ready, lets the
   * requests and operations in flight finish (for at most `drainMs`, GATEWAY_DRAIN_TIMEOUT_MS by
   * default), completes the subscriptions, then closes every connection. Leaves the clients it
   * was given open: they are closed after it by whoever opened them.
   */
  close(drainMs?: number): Promise<void>;
}

function tokenMatches(expected: string, header: string | null | undefined): boolean {
  const m = /^Bearer\s+(.+)$/i.exec(header ?? "");
  if (!m) return false;
  const a = Buffer.from(m[1]!.trim());
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

function makeLoaders(deps: Deps, budget: RequestBudget): Context["loaders"] {
  return {
    history: new DataLoader<{ system: System; orderId: number }, LogDocument[], string>(
      async (keys) => {
        const docs = await budget.run("mongodb", () => deps.log.historyForOrders([...keys]));
        const byKey = new Map<string, LogDocument[]>();
        for (const d of docs) {
          const k = `${d.system}:${d.orderId}`;
          byKey.set(k, [...(byKey.get(k) ?? []), d]);
        }
        return keys.map((k) => byKey.get(`${k.system}:${k.orderId}`) ?? []);
      },
      { cacheKeyFn: (k) => `${k.system}:${k.orderId}` },
    ),
  };
}

/** Mutations always need the token when one is configured; reads only with GATEWAY_TOKEN_READS. */
function useAuth(deps: Deps): Plugin<Context> {
  return {
    onExecute({ args }) {
      guard(deps, args as ExecutionArgs & { contextValue: Context });
    },
    onSubscribe({ args }) {
      guard(deps, args as ExecutionArgs & { contextValue: Context });
    },
  };
}

function guard(deps: Deps, args: ExecutionArgs & { contextValue: Context }): void {
  if (!deps.config.gateway.token || args.contextValue.authenticated) return;
  const op = args.document.definitions.find(
    (d): d is OperationDefinitionNode =>
      d.kind === Kind.OPERATION_DEFINITION && (args.operationName == null || d.name?.value === args.operationName),
  );
  const needs = op?.operation === "mutation" || deps.config.gateway.tokenReads;
  if (needs)
    throw new DomainError("UNAUTHENTICATED", "this operation needs the gateway token: send Authorization: Bearer <token>");
}

/** Polls `done` until it holds or the deadline passes; says whether it held. */
async function until(done: () => boolean, deadline: number): Promise<boolean> {
  while (!done()) {
    if (Date.now() >= deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return true;
}

/** Ends `source` as soon as `signal` aborts, without waiting for the value it is waiting on. */
function untilAborted<T>(source: AsyncIterable<T>, signal: AbortSignal): AsyncIterableIterator<T> {
  const iterator = source[Symbol.asyncIterator]();
  let finished = false;
  let onAbort = () => {};
  const aborted = new Promise<IteratorResult<T>>((resolve) => {
    onAbort = () => resolve({ done: true, value: undefined });
    signal.addEventListener("abort", onAbort, { once: true });
  });
  const finish = (): IteratorResult<T> => {
    if (!finished) {
      finished = true;
      signal.removeEventListener("abort", onAbort);
      // Not awaited: an async generator's return() waits until its pending next() settles,
      // which for an idle subscription is the next event.
      void (async () => iterator.return?.())().catch(() => undefined);
    }
    return { done: true, value: undefined };
  };
  return {
    [Symbol.asyncIterator]() {
      return this;
    },
    async next() {
      if (finished || signal.aborted) return finish();
      const result = await Promise.race([iterator.next(), aborted]);
      return result.done ? finish() : result;
    },
    async return() {
      return finish();
    },
    async throw(err: unknown) {
      finish();
      throw err;
    },
  };
}

const json = { "content-type": "application/json; charset=utf-8" };

export function createGateway(deps: Deps, extraChecks: Check[] = []): Gateway {
  const { config, logger } = deps;
  // Aborted when shutdown reaches the subscriptions: each then ends with a complete message
  // (SSE `event: complete`, graphql-ws `complete`) rather than a cut connection.
  const stopping = new AbortController();
  // Operations still executing, whether or not their client is still there to read the result.
  let executing = 0;

  const yoga = createYoga<Record<string, never>, Context>({
    schema,
    graphqlEndpoint: "/graphql",
    landingPage: false,
    graphiql: graphiqlOptions(config),
    renderGraphiQL,
    logging: false,
    parserAndValidationCache: boundedParserCache(),
    maskedErrors: {
      maskError(error, message) {
        const original = error instanceof GraphQLError ? (error.originalError ?? error) : error;
        if (original instanceof GraphQLError && original.extensions?.code) return original;
        // A document nested deep enough to exhaust the parser's stack is the client's doing.
        if (original instanceof RangeError && /call stack/i.test(original.message)) {
          return new GraphQLError("the query is nested too deeply to parse", {
            extensions: { code: "QUERY_TOO_DEEP", http: { status: 400 } },
          });
        }
        // Errors GraphQL itself raised (validation, variable coercion) describe the request: keep them.
        if (error instanceof GraphQLError && (!error.originalError || error.originalError instanceof GraphQLError)) return error;
        logger.error({ err: errorMessage(original), stack: (original as Error)?.stack }, "unexpected error in a resolver");
        return new GraphQLError(message, { extensions: { code: "INTERNAL_SERVER_ERROR" } });
      },
    },
    context: ({ request }) => {
      const budget = createRequestBudget({
        concurrency: config.gateway.requestConcurrency,
        timeoutMs: config.gateway.requestTimeoutMs,
      });
      return {
        ...deps,
        request,
        authenticated: config.gateway.token ? tokenMatches(config.gateway.token, request.headers.get("authorization")) : true,
        budget,
        loaders: makeLoaders(deps, budget),
      };
    },
    plugins: [
      // A request a browser may send cross-site without a preflight (GET, form or text/plain
      // bodies) must carry x-graphql-yoga-csrf; JSON POSTs are always preflighted.
      useCSRFPrevention({ requestHeaders: ["x-graphql-yoga-csrf"] }),
      // The schema deprecates nothing, and counting deprecated fields walks every request's
      // document with the schema's type information.
      usePrometheus({
        endpoint: "/metrics",
        registry: deps.metrics.registry,
        metrics: { graphql_envelop_deprecated_field: false },
      }),
      useGraphiQLPolicy(),
      useCostLimits(config),
      useAuth(deps),
      ...useClientLimits(config),
      {
        onValidate({ addValidationRule }) {
          addValidationRule(depthLimitRule(config.gateway.maxDepth));
        },
      } satisfies Plugin<Context>,
      {
        onExecute({ executeFn, setExecuteFn }) {
          setExecuteFn(async (args) => {
            executing++;
            try {
              return await executeFn(args);
            } finally {
              executing--;
            }
          });
        },
        onSubscribe() {
          return {
            onSubscribeResult({ result, setResult }) {
              if (isAsyncIterable(result)) setResult(untilAborted(result, stopping.signal));
            },
          };
        },
      } satisfies Plugin<Context>,
    ],
  });

  const checks: Check[] = [
    { name: "postgresql:system1", check: () => deps.sources.SYSTEM1.$queryRaw`select 1` },
    { name: "postgresql:system2", check: () => deps.sources.SYSTEM2.$queryRaw`select 1` },
    { name: "postgresql:endput", check: () => deps.endput.$queryRaw`select 1` },
    { name: "redis", check: () => deps.redis.ping() },
    {
      name: "rabbitmq",
      check: async () => {
        if (!deps.broker.isConnected()) throw new Error("not connected");
      },
    },
    // A ping: counting documents reads the whole log on FerretDB.
    { name: "mongodb", check: () => deps.log.collection.db.command({ ping: 1 }) },
    ...extraChecks,
  ];

  const dashboard = createDashboardHandler({});
  const graphiqlAssets = createGraphiQLAssetsHandler();
  const maxBodyBytes = config.gateway.maxBodyBytes;
  // Every request until its response closes, and whether it asked for a stream (SSE or
  // multipart): a subscription answered that way lasts until it is completed.
  const inFlight = new Map<http.ServerResponse, { streaming: boolean }>();
  let draining = false;
  const server = http.createServer((req, res) => {
    inFlight.set(res, { streaming: /text\/event-stream|multipart\/mixed/.test(req.headers.accept ?? "") });
    res.once("close", () => inFlight.delete(res));
    // While draining, every answer closes its connection: keep-alive clients reconnect elsewhere.
    if (draining) res.setHeader("connection", "close");
    const path = (req.url ?? "/").split("?")[0];
    if (path === "/healthz") {
      res.writeHead(200, json).end(JSON.stringify({ status: "ok" }));
      return;
    }
    if (path === "/readyz") {
      if (draining) res.writeHead(503, json).end(JSON.stringify({ ready: false, draining: true, checks: [] }));
      else void runChecks(checks).then((r) => res.writeHead(r.ready ? 200 : 503, json).end(JSON.stringify(r)));
      return;
    }
    if (draining) {
      const message = "the gateway is shutting down";
      res.writeHead(503, json).end(JSON.stringify({ errors: [{ message, extensions: { code: "SHUTTING_DOWN" } }] }));
      return;
    }
    if (dashboard(req, res) || graphiqlAssets(req, res)) return;
    if (req.method === "GET" || req.method === "HEAD") {
      void yoga(req, res);
      return;
    }
    // The body is read here, bounded, before Yoga sees the request; Yoga takes a body
    // already read from `req.body`, as it does behind Express-style body parsers.
    void readBody(req, maxBodyBytes).then((read) => {
      if (read.kind === "too-large") refuseTooLarge(req, res, maxBodyBytes);
      else if (read.kind === "body") void yoga(Object.assign(req, { body: bodyForYoga(req, read.body) }), res);
    });
  });

  const wss = new WebSocketServer({ server, path: yoga.graphqlEndpoint, maxPayload: config.gateway.maxBodyBytes });
  // graphql-ws keeps every operation in its connection's `subscriptions` until the last message
  // for it is sent, queries and mutations too; only a subscription's entry holds its stream.
  const wsConnections = new Set<{ subscriptions: Record<string, unknown> }>();
  const wsOperations = (which: "all" | "not streaming") =>
    [...wsConnections].reduce((n, c) => n + Object.values(c.subscriptions).filter((s) => which === "all" || s == null).length, 0);
  const wsServer = useServer(
    {
      onConnect: (ctx) => void wsConnections.add(ctx),
      onClose: (ctx) => void wsConnections.delete(ctx),
      // The envelop-wrapped execute/subscribe travel in rootValue (set in onSubscribe).
      execute: (args) => (args.rootValue as { execute: (a: unknown) => never }).execute(args),
      subscribe: (args) => (args.rootValue as { subscribe: (a: unknown) => never }).subscribe(args),
      onSubscribe: async (ctx, _id, params) => {
        const headers = new Headers();
        const auth =
          ((ctx.connectionParams?.authorization ?? ctx.connectionParams?.Authorization) as string | undefined) ??
          headerFromExtensions(params.extensions, "authorization");
        if (auth) headers.set("authorization", auth);
        const request = new Request(`http://localhost${yoga.graphqlEndpoint}`, { method: "POST", headers });
        const {
          schema: s,
          execute,
          subscribe,
          contextFactory,
          parse,
          validate,
        } = yoga.getEnveloped({ ...ctx, req: ctx.extra.request, socket: ctx.extra.socket, params, request });
        const args = {
          schema: s,
          operationName: params.operationName,
          document: parse(params.query),
          variableValues: params.variables,
          contextValue: await contextFactory(),
          rootValue: { execute, subscribe },
        };
        const errors = validate(args.schema, args.document);
        if (errors.length) return errors;
        return args;
      },
    },
    wss,
  );

  async function drainAndClose(drainMs: number): Promise<void> {
    const deadline = Date.now() + drainMs;
    draining = true;
    // No new connections; idle keep-alive connections close now, busy ones after their answer.
    const serverClosed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const res of inFlight.keys()) if (!res.headersSent) res.setHeader("connection", "close");
    const requests = (which: "all" | "not streaming") =>
      [...inFlight.values()].filter((r) => which === "all" || !r.streaming).length;
    const busy = () => ({
      requests: requests("all"),
      executing,
      wsOperations: wsOperations("all"),
    });
    logger.info({ ...busy(), drainMs }, "draining: not ready, no new connections");

    // Subscriptions never finish by themselves: wait for everything else first.
    await until(() => requests("not streaming") === 0 && executing === 0 && wsOperations("not streaming") === 0, deadline);
    stopping.abort();
    // Completing a subscription takes a moment: allowed even when the requests used up the drain time.
    const drained = await until(
      () => inFlight.size === 0 && executing === 0 && wsOperations("all") === 0,
      Math.max(deadline, Date.now() + 1000),
    );
    if (!drained) logger.warn(busy(), "drain timed out: closing connections with work still in flight");

    await wsServer.dispose(); // Close 1001 "Going away" to every WebSocket client.
    await until(() => wss.clients.size === 0, Math.max(deadline, Date.now() + 1000));
    for (const client of wss.clients) client.terminate();
    server.closeAllConnections();
    await serverClosed;
    await yoga.dispose();
  }

  let closed: Promise<void> | undefined;
  return {
    yoga,
    server,
    close(drainMs = config.gateway.drainTimeoutMs) {
      closed ??= drainAndClose(drainMs);
      return closed;
    },
  };
}
