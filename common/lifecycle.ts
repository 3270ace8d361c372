// Releasers run in reverse order of registration, each step logged: whoever
// opens a resource registers how to close it.
import { errorMessage } from "./errors.ts";
import type { Logger } from "./logger.ts";

export interface Releasers {
  add(name: string, release: () => Promise<unknown> | unknown): void;
  releaseAll(): Promise<void>;
}

export function createReleasers(logger: Logger): Releasers {
  const stack: { name: string; release: () => Promise<unknown> | unknown }[] = [];
  let released: Promise<void> | undefined;
  return {
    add: (name, release) => void stack.push({ name, release }),
    releaseAll() {
      released ??= (async () => {
        while (stack.length > 0) {
          const { name, release } = stack.pop()!;
          try {
            await release();
            logger.info({ step: name }, "released");
          } catch (err) {
            logger.warn({ step: name, err: errorMessage(err) }, "release failed");
          }
        }
      })();
      return released;
    },
  };
}

/** Calls `stop` once on SIGINT/SIGTERM; a second signal exits at once. */
export function onShutdownSignal(logger: Logger, stop: (signal: string) => Promise<void>): void {
  let stopping = false;
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.on(signal, () => {
      if (stopping) {
        logger.warn({ signal }, "second signal: exiting now");
        process.exit(1);
      }
      stopping = true;
      logger.info({ signal }, "shutting down");
      void stop(signal);
    });
  }
}
