// The gateway's HTTP routes: /healthz and /readyz, a refusal for everything else but /metrics on
// a connection over the connection limits (connection-limits.ts), a 503 while draining, the
// dashboard and GraphiQL's assets, then GraphQL (GET as is, other methods with a bounded body).
import type http from "node:http";
import type { Duplex } from "node:stream";

import { type Check, sharedReadiness } from "../../common/http-health.ts";
import type { ShutdownState } from "./drain.ts";
import {
  bodyForYoga,
  isJson,
  MAX_JSON_DEPTH,
  nestedDeeperThan,
  readBody,
  type Refusal,
  refuseRequest,
  refuseTooLarge,
  tooDeeplyNested,
} from "./limits.ts";

type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => unknown;

const json = { "content-type": "application/json; charset=utf-8" };

export function createRequestHandler(opts: {
  shutdown: ShutdownState;
  checks: Check[];
  /** Static handlers: each answers (true) or passes (false). */
  statics: ((req: http.IncomingMessage, res: http.ServerResponse) => boolean)[];
  yoga: Handler;
  maxBodyBytes: number;
  /** The answer to every request on the socket's connection but health checks and metrics, if it is refused. */
  refusal: (socket: Duplex) => Refusal | undefined;
}): (req: http.IncomingMessage, res: http.ServerResponse) => void {
  const { shutdown, statics, yoga, maxBodyBytes } = opts;
  const readiness = sharedReadiness(opts.checks);
  return (req, res) => {
    shutdown.inFlight.set(res, { streaming: /text\/event-stream|multipart\/mixed/.test(req.headers.accept ?? "") });
    res.once("close", () => shutdown.inFlight.delete(res));
    const refusal = opts.refusal(req.socket);
    // While draining, every answer closes its connection: keep-alive clients reconnect elsewhere.
    if (shutdown.draining || refusal) res.setHeader("connection", "close");
    const path = (req.url ?? "/").split("?")[0];
    if (path === "/healthz") {
      res.writeHead(200, json).end(JSON.stringify({ status: "ok" }));
      return;
    }
    if (path === "/readyz") {
      if (shutdown.draining) res.writeHead(503, json).end(JSON.stringify({ ready: false, draining: true, checks: [] }));
      else void readiness().then((r) => res.writeHead(r.ready ? 200 : 503, json).end(JSON.stringify(r)));
      return;
    }
    // Metrics too are answered on any connection: a flood is when operators need them.
    if (refusal && path !== "/metrics") {
      refuseRequest(req, res, refusal);
      return;
    }
    if (shutdown.draining) {
      const message = "the gateway is shutting down";
      res.writeHead(503, json).end(JSON.stringify({ errors: [{ message, extensions: { code: "SHUTTING_DOWN" } }] }));
      return;
    }
    if (statics.some((handle) => handle(req, res))) return;
    if (req.method === "GET" || req.method === "HEAD") {
      void yoga(req, res);
      return;
    }
    // The body is read here, bounded, before Yoga sees the request; Yoga takes a body
    // already read from `req.body`, as it does behind Express-style body parsers.
    void readBody(req, maxBodyBytes).then((read) => {
      if (read.kind === "too-large") refuseTooLarge(req, res, maxBodyBytes);
      else if (read.kind !== "body") return;
      else if (isJson(req) && nestedDeeperThan(read.body, MAX_JSON_DEPTH)) refuseRequest(req, res, tooDeeplyNested);
      else void yoga(Object.assign(req, { body: bodyForYoga(req, read.body) }), res);
    });
  };
}
