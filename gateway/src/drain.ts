// Shutting the gateway down without cutting work in flight. The shutdown state counts what is
// in flight (HTTP requests, executing operations); drainAndClose waits for it in order: requests
// and operations first, then the subscriptions, which never finish by themselves.
import type http from "node:http";

import type { useServer } from "graphql-ws/use/ws";
import { isAsyncIterable, type Plugin, type YogaServerInstance } from "graphql-yoga";
import type { WebSocketServer } from "ws";

import type { Logger } from "../../common/logger.ts";
import type { Context } from "./context.ts";

export interface ShutdownState {
  /**
   * Aborted when shutdown reaches the subscriptions: each then ends with a complete message
   * (SSE `event: complete`, graphql-ws `complete`) rather than a cut connection.
   */
  readonly stopping: AbortController;
  /** Operations still executing, whether or not their client is still there to read the result. */
  executing: number;
  /** Set when shutdown begins: not ready, every answer closes its connection. */
  draining: boolean;
  /**
   * Every request until its response closes, and whether it asked for a stream (SSE or
   * multipart): a subscription answered that way lasts until it is completed.
   */
  readonly inFlight: Map<http.ServerResponse, { streaming: boolean }>;
}

export function createShutdownState(): ShutdownState {
  return { stopping: new AbortController(), executing: 0, draining: false, inFlight: new Map() };
}

/** Counts executing operations and ends every subscription's stream when shutdown reaches them. */
export function useShutdownTracking(state: ShutdownState): Plugin<Context> {
  return {
    onExecute({ executeFn, setExecuteFn }) {
      setExecuteFn(async (args) => {
        state.executing++;
        try {
          return await executeFn(args);
        } finally {
          state.executing--;
        }
      });
    },
    onSubscribe() {
      return {
        onSubscribeResult({ result, setResult }) {
          if (isAsyncIterable(result)) setResult(untilAborted(result, state.stopping.signal));
        },
      };
    },
  };
}

export interface Servers {
  server: http.Server;
  wss: WebSocketServer;
  wsServer: ReturnType<typeof useServer>;
  /** WebSocket operations in flight: all, or only those that are not a subscription's stream. */
  wsOperations(which: "all" | "not streaming"): number;
  yoga: Pick<YogaServerInstance<Record<string, never>, Context>, "dispose">;
}

/**
 * Stops accepting connections and reports not ready, lets the requests and operations in flight
 * finish (until `drainMs` has passed), completes the subscriptions, then closes every connection.
 */
export async function drainAndClose(state: ShutdownState, servers: Servers, logger: Logger, drainMs: number): Promise<void> {
  const { server, wss, wsServer, wsOperations, yoga } = servers;
  const { inFlight } = state;
  const deadline = Date.now() + drainMs;
  state.draining = true;
  // No new connections; idle keep-alive connections close now, busy ones after their answer.
  const serverClosed = new Promise<void>((resolve) => server.close(() => resolve()));
  for (const res of inFlight.keys()) if (!res.headersSent) res.setHeader("connection", "close");
  const requests = (which: "all" | "not streaming") =>
    [...inFlight.values()].filter((r) => which === "all" || !r.streaming).length;
  const busy = () => ({
    requests: requests("all"),
    executing: state.executing,
    wsOperations: wsOperations("all"),
  });
  logger.info({ ...busy(), drainMs }, "draining: not ready, no new connections");

  // Subscriptions never finish by themselves: wait for everything else first.
  await until(() => requests("not streaming") === 0 && state.executing === 0 && wsOperations("not streaming") === 0, deadline);
  state.stopping.abort();
  // Completing a subscription takes a moment: allowed even when the requests used up the drain time.
  const drained = await until(
    () => inFlight.size === 0 && state.executing === 0 && wsOperations("all") === 0,
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

/** Polls `done` until it holds or the deadline passes; says whether it held. */
export async function until(done: () => boolean, deadline: number): Promise<boolean> {
  while (!done()) {
    if (Date.now() >= deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return true;
}

/**
 * Ends `source` as soon as `signal` aborts, without waiting for the value it is waiting on. The
 * abort settles the one pending next() directly: racing every next() against one promise that
 * lives as long as the stream would leave a reaction on it per item, which a subscription
 * delivering the pipeline's events grew by ~1 KB per event until the gateway ran out of heap.
 */
export function untilAborted<T>(source: AsyncIterable<T>, signal: AbortSignal): AsyncIterableIterator<T> {
  const iterator = source[Symbol.asyncIterator]();
  let finished = false;
  let pending: (() => void) | undefined;
  const onAbort = () => pending?.();
  signal.addEventListener("abort", onAbort, { once: true });
  const finish = (): IteratorResult<T> => {
    if (!finished) {
      finished = true;
      pending = undefined;
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
    next() {
      if (finished || signal.aborted) return Promise.resolve(finish());
      return new Promise<IteratorResult<T>>((resolve, reject) => {
        pending = () => resolve(finish());
        iterator.next().then(
          (result) => {
            pending = undefined;
            resolve(result.done ? finish() : result);
          },
          (err: unknown) => {
            pending = undefined;
            reject(err);
          },
        );
      });
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
