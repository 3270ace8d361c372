// The gateway: GraphQL over HTTP (GraphiQL at /graphql), SSE and WebSocket
// subscriptions, health endpoints. Takes every client from main().
import { timingSafeEqual } from "node:crypto";
import http from "node:http";

import { useCSRFPrevention } from "@graphql-yoga/plugin-csrf-prevention";
import { usePrometheus } from "@graphql-yoga/plugin-prometheus";
import DataLoader from "dataloader";
import { type ExecutionArgs, GraphQLError, Kind, type OperationDefinitionNode } from "graphql";
import { useServer } from "graphql-ws/use/ws";
import { createYoga, type Plugin } from "graphql-yoga";
import { WebSocketServer } from "ws";

import type { LogDocument } from "../../common/attempt-log.ts";
import type { System } from "../../common/contract.ts";
import { errorMessage } from "../../common/errors.ts";
import { type Check, runChecks } from "../../common/http-health.ts";
import type { Context, Deps } from "./context.ts";
import { createDashboardHandler } from "./dashboard.ts";
import { DomainError } from "./errors.ts";
import { depthLimitRule } from "./limits.ts";
import { schema } from "./schema/index.ts";

export interface Gateway {
  yoga: ReturnType<typeof createYoga<Record<string, never>, Context>>;
  server: http.Server;
  /** Closes the HTTP and WebSocket servers (not the clients it was given). */
  close(): Promise<void>;
}

function tokenMatches(expected: string, header: string | null | undefined): boolean {
  const m = /^Bearer\s+(.+)$/i.exec(header ?? "");
  if (!m) return false;
  const a = Buffer.from(m[1]!.trim());
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

function makeLoaders(deps: Deps): Context["loaders"] {
  return {
    history: new DataLoader<{ system: System; orderId: number }, LogDocument[], string>(
      async (keys) => {
        const docs = await deps.log.historyForOrders([...keys]);
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

export function createGateway(deps: Deps, extraChecks: Check[] = []): Gateway {
  const { config, logger } = deps;

  const yoga = createYoga<Record<string, never>, Context>({
    schema,
    graphqlEndpoint: "/graphql",
    landingPage: false,
    graphiql: { title: "tentativa", subscriptionsProtocol: "WS" },
    logging: false,
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
    context: ({ request }) => ({
      ...deps,
      request,
      authenticated: config.gateway.token ? tokenMatches(config.gateway.token, request.headers.get("authorization")) : true,
      loaders: makeLoaders(deps),
    }),
    plugins: [
      // A request a browser may send cross-site without a preflight (GET, form or text/plain
      // bodies) must carry x-graphql-yoga-csrf; JSON POSTs are always preflighted.
      useCSRFPrevention({ requestHeaders: ["x-graphql-yoga-csrf"] }),
      usePrometheus({ endpoint: "/metrics", registry: deps.metrics.registry }),
      useAuth(deps),
      {
        onValidate({ addValidationRule }) {
          addValidationRule(depthLimitRule(config.gateway.maxDepth));
        },
      } satisfies Plugin<Context>,
      {
        onRequest({ request, endResponse, fetchAPI }) {
          const length = Number(request.headers.get("content-length") ?? 0);
          if (length > config.gateway.maxBodyBytes) {
            endResponse(
              new fetchAPI.Response(
                JSON.stringify({
                  errors: [
                    {
                      message: `request body exceeds ${config.gateway.maxBodyBytes} bytes`,
                      extensions: { code: "PAYLOAD_TOO_LARGE" },
                    },
                  ],
                }),
                { status: 413, headers: { "content-type": "application/json" } },
              ),
            );
          }
        },
      },
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
  const server = http.createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (path === "/healthz") {
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ status: "ok" }));
      return;
    }
    if (path === "/readyz") {
      void runChecks(checks).then((r) =>
        res.writeHead(r.ready ? 200 : 503, { "content-type": "application/json" }).end(JSON.stringify(r)),
      );
      return;
    }
    if (dashboard(req, res)) return;
    void yoga(req, res);
  });

  const wss = new WebSocketServer({ server, path: yoga.graphqlEndpoint, maxPayload: config.gateway.maxBodyBytes });
  const wsServer = useServer(
    {
      // The envelop-wrapped execute/subscribe travel in rootValue (set in onSubscribe).
      execute: (args) => (args.rootValue as { execute: (a: unknown) => never }).execute(args),
      subscribe: (args) => (args.rootValue as { subscribe: (a: unknown) => never }).subscribe(args),
      onSubscribe: async (ctx, _id, params) => {
        const headers = new Headers();
        const auth = (ctx.connectionParams?.authorization ?? ctx.connectionParams?.Authorization) as string | undefined;
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

  return {
    yoga,
    server,
    async close() {
      await wsServer.dispose();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
