// A query re-run every few seconds, at once after a mutation and whenever `key`
// changes; one request at a time.
import { useEffect, useRef, useState } from "preact/hooks";

import { errorText } from "./api.ts";
import { useServices } from "./context.ts";

export interface Polled<T> {
  data: T | undefined;
  /** The last failure, cleared by the next success; the last good data stays shown meanwhile. */
  error: string | null;
  updatedAt: number | null;
}

export function usePoll<T>(load: () => Promise<T>, intervalMs: number, key?: unknown): Polled<T> {
  const { refreshes } = useServices();
  const [state, setState] = useState<Polled<T>>({ data: undefined, error: null, updatedAt: null });
  const loadRef = useRef(load);
  loadRef.current = load;
  const runRef = useRef<(() => Promise<void>) | null>(null);

  useEffect(() => {
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let running = false;
    let again = false;

    async function run() {
      if (running) {
        again = true;
        return;
      }
      running = true;
      clearTimeout(timer);
      try {
        const data = await loadRef.current();
        if (!stopped) setState({ data, error: null, updatedAt: Date.now() });
      } catch (err) {
        if (!stopped) setState((s) => ({ ...s, error: errorText(err) }));
      } finally {
        running = false;
        if (!stopped) {
          if (again) {
            again = false;
            void run();
          } else timer = setTimeout(() => void run(), intervalMs);
        }
      }
    }

    void run();
    runRef.current = run;
    const unsubscribe = refreshes.subscribe(() => void run());
    return () => {
      stopped = true;
      runRef.current = null;
      clearTimeout(timer);
      unsubscribe();
    };
  }, [intervalMs, refreshes]);

  const firstKey = useRef(true);
  useEffect(() => {
    if (firstKey.current) firstKey.current = false;
    else void runRef.current?.();
  }, [key]);

  return state;
}
