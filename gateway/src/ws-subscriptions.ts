// GraphQL over WebSocket (graphql-ws) on the GraphQL endpoint, through Yoga's envelop so that
// every plugin (auth, limits, shutdown tracking) applies as it does over HTTP.
import http from "node:http";
import type { Duplex } from "node:stream";

import { GraphQLError } from "graphql";
import { useServer } from "graphql-ws/use/ws";
import type { YogaServerInstance } from "graphql-yoga";
import { WebSocketServer } from "ws";

import type { Context } from "./context.ts";
import type { Servers } from "./drain.ts";
import { headerFromExtensions } from "./graphiql.ts";
import type { Refusal } from "./limits.ts";

/** RFC 6455's close code for a client that broke the server's rules. */
const CLOSE_POLICY_VIOLATION = 1008;

export function serveWebSockets(
  server: http.Server,
  yoga: YogaServerInstance<Record<string, never>, Context>,
  limits: {
    /** Largest message, in bytes. */
    maxPayload: number;
    /** Operations one connection may have in flight (GATEWAY_CONNECTION_OPERATIONS). */
    maxOperations: number;
    /** The answer to an upgrade on a connection over the connection limits. */
    refusal: (socket: Duplex) => Refusal | undefined;
  },
): Pick<Servers, "wss" | "wsServer" | "wsOperations"> {
  const { maxPayload, maxOperations, refusal } = limits;
  const wss = new WebSocketServer({ noServer: true, path: yoga.graphqlEndpoint, maxPayload });
  server.on("upgrade", (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    const refused = refusal(socket);
    if (refused) refuseUpgrade(socket, refused);
    else wss.handleUpgrade(req, socket, head, (ws) => wss.emit("connection", ws, req));
  });
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
        // Nothing else bounds what one connection has in flight: a client that sends operations
        // without waiting for their results made the gateway hold one execution each, and 100,000
        // ran it out of heap within 2 s. Past the limit an operation is refused; past twice the
        // limit the refusals are not being read either, and the connection is closed.
        const inFlight = Object.keys(ctx.subscriptions).length; // this one included
        if (inFlight > maxOperations) {
          if (inFlight > 2 * maxOperations) ctx.extra.socket.close(CLOSE_POLICY_VIOLATION, "too many operations in flight");
          const message = `at most ${maxOperations} operations in flight per connection: wait for one to finish`;
          return [
            new GraphQLError(message, { extensions: { code: "RATE_LIMITED", limit: "connection", operations: maxOperations } }),
          ];
        }
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

/** Answers an upgrade request with `refusal` and closes the connection, as `ws` answers a handshake it refuses. */
function refuseUpgrade(socket: Duplex, refusal: Refusal): void {
  const headers = {
    ...refusal.headers,
    connection: "close",
    "content-type": "application/json; charset=utf-8",
    "content-length": Buffer.byteLength(refusal.body),
  };
  const head = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`);
  socket.once("finish", () => socket.destroy());
  socket.end(`HTTP/1.1 ${refusal.status} ${http.STATUS_CODES[refusal.status]}\r\n${head.join("")}\r\n${refusal.body}`);
}
