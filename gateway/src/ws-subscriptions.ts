// GraphQL over WebSocket (graphql-ws) on the GraphQL endpoint, through Yoga's envelop so that
// every plugin (auth, limits, shutdown tracking) applies as it does over HTTP.
import type http from "node:http";

import { useServer } from "graphql-ws/use/ws";
import type { YogaServerInstance } from "graphql-yoga";
import { WebSocketServer } from "ws";

import type { Context } from "./context.ts";
import type { Servers } from "./drain.ts";
import { headerFromExtensions } from "./graphiql.ts";

export function serveWebSockets(
  server: http.Server,
  yoga: YogaServerInstance<Record<string, never>, Context>,
  maxPayload: number,
): Pick<Servers, "wss" | "wsServer" | "wsOperations"> {
  const wss = new WebSocketServer({ server, path: yoga.graphqlEndpoint, maxPayload });
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
  return { wss, wsServer, wsOperations };
}
