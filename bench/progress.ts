// Progress lines on stderr, stamped with the seconds since the run started, so
// stdout carries only the table.
const started = performance.now();

export function progress(message: string): void {
  const s = ((performance.now() - started) / 1000).toFixed(1).padStart(6);
  process.stderr.write(`[bench ${s}s] ${message}\n`);
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export const fmt = (n: number, digits = 0) =>
  Number.isFinite(n) ? n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits }) : "n/a";

/** Calls `tick` every `ms` until the returned stop function runs. */
export function every(ms: number, tick: () => void | Promise<void>): () => void {
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    void Promise.resolve()
      .then(tick)
      .catch(() => undefined)
      .finally(() => (running = false));
  }, ms);
  return () => clearInterval(timer);
}
