// A result shared by the callers that follow it for a while (sharedResult: the readiness probes of
// http-health.ts), and the gateway's scrape-time readings built on it, bounded in time too, so
// scrapes from several Prometheus servers cost a store one reading per interval, and a store that
// hangs leaves its gauges unset instead of hanging the scrape.

/** How long a reading serves scrapes. */
const READING_TTL_MS = 5_000;
/** How long a scrape waits for a reading. */
const READING_TIMEOUT_MS = 2_000;

/**
 * The last result of `read` while it is under `ttlMs` old, and one `read` at a time however many
 * callers ask; a failed read is not kept.
 */
export function sharedResult<T>(read: () => Promise<T>, ttlMs: number): () => Promise<T> {
  let last: { at: number; value: T } | undefined;
  let inFlight: Promise<T> | undefined;
  return () => {
    if (last && Date.now() - last.at < ttlMs) return Promise.resolve(last.value);
    inFlight ??= read()
      .then((value) => {
        last = { at: Date.now(), value };
        return value;
      })
      .finally(() => (inFlight = undefined));
    return inFlight;
  };
}

/** The last reading while it is fresh; one reading at a time; undefined when it failed or took too long. */
export function cachedReading<T>(read: () => Promise<T>, ttlMs = READING_TTL_MS, timeoutMs = READING_TIMEOUT_MS) {
  const shared = sharedResult(read, ttlMs);
  return async (): Promise<T | undefined> => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<undefined>((r) => {
      timer = setTimeout(() => r(undefined), timeoutMs);
    });
    try {
      return await Promise.race([shared().catch(() => undefined), timeout]);
    } finally {
      clearTimeout(timer);
    }
  };
}
