// The processingEvents subscription feeding the live model. Reconnects with the
// new token when it changes; re-renders at most every FLUSH_MS.
import { print } from "@0no-co/graphql.web";
import { useCallback, useEffect, useRef, useState } from "preact/hooks";

import type { ResultOf } from "../../client/graphql.ts";
import { errorText, toApiError } from "./api.ts";
import { useServices } from "./context.ts";
import { createLiveModel, type LiveModel, recordEvent } from "./live.ts";
import { PROCESSING_EVENTS, type ProcessingEvent } from "./operations.ts";
import { useStore } from "./store.ts";

const FLUSH_MS = 250;

export type Connection =
  { state: "connecting" } | { state: "live" } | { state: "reconnecting"; reason: string } | { state: "failed"; reason: string };

export interface Live {
  model: LiveModel;
  /** Changes whenever the model did; a dependency for memoised views. */
  version: number;
  connection: Connection;
  /** Called for every event as it arrives (before the next render). */
  onEvent(listener: (event: ProcessingEvent) => void): () => void;
  /** Starts over: empties the counters, the sparklines and the event list. */
  reset(): void;
  /** Subscribes again after a failure. */
  reconnect(): void;
}

export function useLive(): Live {
  const { api, tokens, toasts } = useServices();
  const token = useStore(tokens);
  const model = useRef<LiveModel>(createLiveModel());
  const listeners = useRef(new Set<(event: ProcessingEvent) => void>());
  const dirty = useRef(false);
  const [version, setVersion] = useState(0);
  const [connection, setConnection] = useState<Connection>({ state: "connecting" });
  const [attempt, setAttempt] = useState(0);

  useEffect(() => {
    const timer = setInterval(() => {
      if (!dirty.current) return;
      dirty.current = false;
      setVersion((v) => v + 1);
    }, FLUSH_MS);
    return () => clearInterval(timer);
  }, []);

  useEffect(() => {
    let disposed = false;
    setConnection({ state: "connecting" });
    const fail = (reason: string) => {
      if (disposed) return;
      setConnection({ state: "failed", reason });
      toasts.notify("error", `Live events stopped: ${reason}`);
    };
    const client = api.createWsClient({
      connecting: () => !disposed && setConnection((c) => (c.state === "reconnecting" ? c : { state: "connecting" })),
      connected: () => !disposed && setConnection({ state: "live" }),
      closed: (reason) => !disposed && setConnection({ state: "reconnecting", reason }),
    });
    const unsubscribe = client.subscribe<ResultOf<typeof PROCESSING_EVENTS>>(
      { query: print(PROCESSING_EVENTS) },
      {
        next(result) {
          if (result.errors?.length) return fail(errorText(toApiError(result.errors)));
          const event = result.data?.processingEvents;
          if (!event) return;
          recordEvent(model.current, event, Date.now());
          dirty.current = true;
          for (const l of listeners.current) l(event);
        },
        error(err) {
          fail(Array.isArray(err) ? errorText(toApiError(err)) : errorText(err));
        },
        complete() {
          if (!disposed) setConnection({ state: "failed", reason: "the gateway ended the subscription" });
        },
      },
    );
    return () => {
      disposed = true;
      unsubscribe();
      void client.dispose();
    };
  }, [api, toasts, token, attempt]);

  const onEvent = useCallback((listener: (event: ProcessingEvent) => void) => {
    listeners.current.add(listener);
    return () => void listeners.current.delete(listener);
  }, []);
  const reset = useCallback(() => {
    model.current = createLiveModel();
    setVersion((v) => v + 1);
  }, []);
  const reconnect = useCallback(() => setAttempt((a) => a + 1), []);

  return { model: model.current, version, connection, onEvent, reset, reconnect };
}
