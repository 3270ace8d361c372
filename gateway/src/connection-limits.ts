// How many connections the gateway holds. Each costs heap whether or not it ever sends a request
// (an idle socket about 3 KB, a WebSocket past connection_init about 6 KB), and opening them costs
// a client nothing: 16,000 WebSockets from one address ran the gateway out of its 128 MB heap. So a
// connection past GATEWAY_CLIENT_CONNECTIONS from its address, or past GATEWAY_MAX_CONNECTIONS in
// all, is refused: its first request (a WebSocket upgrade too) is answered TOO_MANY_CONNECTIONS
// (429 for the client's own limit, 503 for the gateway's) and the connection closed; one that
// sends nothing is closed after REFUSED_IDLE_MS. Past twice GATEWAY_MAX_CONNECTIONS, Node drops
// new connections unanswered (`server.maxConnections`), which bounds the refused ones too.
import type http from "node:http";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";

import type { Refusal } from "./limits.ts";
import { perClient } from "./rate-limits.ts";

export const REFUSED_IDLE_MS = 2_000;

export type ConnectionLimit = "client" | "total";

export interface ConnectionLimits {
  /**
   * The limit the socket's connection was over when it arrived, if any. The caller answers the
   * request that came on it with `tooManyConnections` and closes it: the idle timer stops.
   */
  refusal(socket: Duplex): ConnectionLimit | undefined;
}

export function limitConnections(
  server: http.Server,
  limits: { total: number; perClient: number },
  onRefused: (limit: ConnectionLimit) => void = () => undefined,
): ConnectionLimits {
  const byAddress = perClient(limits.perClient);
  const refused = new WeakMap<Duplex, { limit: ConnectionLimit; idle: NodeJS.Timeout }>();
  let open = 0;
  server.maxConnections = 2 * limits.total;

  server.on("connection", (socket: Socket) => {
    const address = socket.remoteAddress ?? "unknown";
    const over: ConnectionLimit | undefined = open >= limits.total ? "total" : !byAddress.take(address) ? "client" : undefined;
    if (over) {
      onRefused(over);
      const idle = setTimeout(() => socket.destroy(), REFUSED_IDLE_MS);
      idle.unref();
      socket.once("close", () => clearTimeout(idle));
      refused.set(socket, { limit: over, idle });
      return;
    }
    open++;
    socket.once("close", () => {
      open--;
      byAddress.release(address);
    });
  });

  return {
    refusal(socket) {
      const r = refused.get(socket);
      if (r) clearTimeout(r.idle);
      return r?.limit;
    },
  };
}

/**
 * How long a client may take to send a request: its headers within `headersTimeoutMs`
 * (GATEWAY_HEADERS_TIMEOUT_MS), the whole request within six times that (at least a minute, for a
 * megabyte body over a slow link), or Node answers 408 and closes the connection. Node's defaults
 * (60 s and 300 s, checked every 30 s) let a client that sends a byte now and then hold a
 * connection, one of its GATEWAY_CLIENT_CONNECTIONS, for up to one and a half minutes.
 */
export function slowClientTimeouts(headersTimeoutMs: number): http.ServerOptions {
  return {
    headersTimeout: headersTimeoutMs,
    requestTimeout: Math.max(60_000, 6 * headersTimeoutMs),
    connectionsCheckingInterval: Math.min(1_000, headersTimeoutMs),
  };
}

/** The answer to a request on a refused connection. */
export function tooManyConnections(limit: ConnectionLimit, limits: { total: number; perClient: number }): Refusal {
  const message =
    limit === "client"
      ? `at most ${limits.perClient} connections at once per client: reuse one, or close one first`
      : `the gateway holds its maximum of ${limits.total} connections: try again later`;
  const max = limit === "client" ? limits.perClient : limits.total;
  return {
    status: limit === "client" ? 429 : 503,
    headers: { "retry-after": "1" },
    body: JSON.stringify({ errors: [{ message, extensions: { code: "TOO_MANY_CONNECTIONS", limit, max } }] }),
  };
}
