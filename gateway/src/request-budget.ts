// Bounded work per request: every store call a request's resolvers make goes through its
// budget, which lets at most GATEWAY_REQUEST_CONCURRENCY of them run at once and refuses
// to start or wait for one after GATEWAY_REQUEST_TIMEOUT_MS. One request therefore holds at
// most that many connections of the shared pools, however many fields it selects.
import type { DependencyError } from "../../common/errors.ts";
import { DomainError, using } from "./errors.ts";

export interface RequestBudget {
  /** Runs one store call within the budget; connectivity failures become DEPENDENCY_UNAVAILABLE. */
  run<T>(dependency: DependencyError["dependency"], fn: () => Promise<T>): Promise<T>;
  /** The first call's answer for `key` for the rest of the request: aliases of one field share it. */
  once<T>(key: string, fn: () => Promise<T>): Promise<T>;
}

export function createRequestBudget(limits: { concurrency: number; timeoutMs: number }): RequestBudget {
  const { concurrency, timeoutMs } = limits;
  const deadline = Date.now() + timeoutMs;
  const waiting: { start: () => void }[] = [];
  const memo = new Map<string, Promise<unknown>>();
  let running = 0;

  const timedOut = () =>
    new DomainError("REQUEST_TIMEOUT", `the request used up its ${timeoutMs} ms budget; ask for less at once`, {
      timeoutMs,
    });

  /** Resolves once the call may start, or rejects at the deadline. */
  function slot(): Promise<void> {
    if (running < concurrency) {
      running++;
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const entry = {
        start: () => {
          clearTimeout(timer);
          running++;
          resolve();
        },
      };
      const timer = setTimeout(
        () => {
          waiting.splice(waiting.indexOf(entry), 1);
          reject(timedOut());
        },
        Math.max(0, deadline - Date.now()),
      );
      timer.unref();
      waiting.push(entry);
    });
  }

  function release(): void {
    running--;
    waiting.shift()?.start();
  }

  async function run<T>(dependency: DependencyError["dependency"], fn: () => Promise<T>): Promise<T> {
    if (Date.now() >= deadline) throw timedOut();
    await slot();
    // The slot stays taken until the store answers, even after the request gave up on it:
    // the connection is busy until then.
    const call = using(dependency, fn).finally(release);
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(timedOut()), Math.max(0, deadline - Date.now()));
      timer.unref();
    });
    try {
      return await Promise.race([call, expired]);
    } finally {
      clearTimeout(timer);
      call.catch(() => undefined);
    }
  }

  function once<T>(key: string, fn: () => Promise<T>): Promise<T> {
    let p = memo.get(key) as Promise<T> | undefined;
    if (!p) {
      p = fn();
      memo.set(key, p);
    }
    return p;
  }

  return { run, once };
}
