// A reading taken at scrape time, shared by the scrapes that follow it for a while and bounded
// in time, so scrapes from several Prometheus servers cost a store one reading per interval, and
// a store that hangs leaves its gauges unset instead of hanging the scrape.

/** How long a reading serves scrapes. */
const READING_TTL_MS = 5_000;
/** How long a scrape waits for a reading. */
const READING_TIMEOUT_MS = 2_000;

/** The last reading while it is fresh; one reading at a time; undefined when it failed or took too long. */
export function cachedReading<T>(read: () => Promise<T>, ttlMs = READING_TTL_MS, timeoutMs = READING_TIMEOUT_MS) {
  let last: { at: number; value: T } | undefined;
  let inFlight: Promise<T | undefined> | undefined;
  return async (): Promise<T | undefined> => {
    if (last && Date.now() - last.at < ttlMs) return last.value;
    inFlight ??= read()
      .then((value) => {
        last = { at: Date.now(), value };
        return value;
      })
      .catch(() => undefined)
      .finally(() => (inFlight = undefined));
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<undefined>((r) => {
      timer = setTimeout(() => r(undefined), timeoutMs);
    });
    try {
      return await Promise.race([inFlight, timeout]);
    } finally {
      clearTimeout(timer);
    }
  };
}
