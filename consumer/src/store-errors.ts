// Which failed store writes are about one message and which about the store. A store that is
// down, busy or shutting down holds the batch until it is back; a value the store refuses
// (PostgreSQL's data exceptions, class 22, and integrity violations, class 23) is refused
// whatever the retries, so only the message that carries it is rejected and the batch goes on.

/** A store refused a write for good: retrying cannot help, the message that carries it is rejected. */
export class StoreRefused extends Error {
  override name = "StoreRefused";
  readonly code: string;
  constructor(store: string, code: string, message: string, options?: { cause?: unknown }) {
    super(`${store} refused the write (SQLSTATE ${code}): ${message}`, options);
    this.code = code;
  }
}

const PERMANENT_CLASSES = new Set(["22", "23"]);

/** The SQLSTATE of a PostgreSQL error as pg raises it (a socket error's code, such as ECONNRESET, is none). */
export function sqlStateOf(err: unknown): { code: string; message: string } | undefined {
  if (!err || typeof err !== "object") return undefined;
  const e = err as { code?: unknown; message?: unknown };
  if (typeof e.code === "string" && /^[0-9A-Z]{5}$/.test(e.code)) return { code: e.code, message: String(e.message ?? "") };
  return undefined;
}

/** The refusal a failed PostgreSQL write amounts to, or undefined when it is worth retrying. */
export function refusalOf(store: string, err: unknown): StoreRefused | undefined {
  const state = sqlStateOf(err);
  if (!state || !PERMANENT_CLASSES.has(state.code.slice(0, 2))) return undefined;
  return new StoreRefused(store, state.code, state.message, { cause: err });
}

/**
 * Writes all items at once; when that write is refused, writes them one at a time so that only
 * the items the store refuses are singled out. `write` retries what is transient itself and
 * throws StoreRefused for what is not. Returns the refused items' indexes with their refusal.
 */
export async function writeIsolating<T>(items: T[], write: (batch: T[]) => Promise<unknown>): Promise<Map<number, StoreRefused>> {
  const refused = new Map<number, StoreRefused>();
  if (items.length === 0) return refused;
  try {
    await write(items);
    return refused;
  } catch (err) {
    if (!(err instanceof StoreRefused)) throw err;
    if (items.length === 1) return refused.set(0, err);
  }
  for (const [idx, item] of items.entries()) {
    try {
      await write([item]);
    } catch (err) {
      if (!(err instanceof StoreRefused)) throw err;
      refused.set(idx, err);
    }
  }
  return refused;
}
