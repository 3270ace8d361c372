// The consumer yields the CPU to the gateway. Both are busy while a backlog drains, and on a
// host they share (with the stores) a request to the gateway would otherwise wait behind
// batch work that is not in a hurry (scenario 6b: 2-6 of 1,200 refusals over 100 ms per run at
// equal priority, 0-3 with the consumer at niceness 10).
// Set before any helper thread starts, so the libuv pool's threads inherit it.
import os from "node:os";

import { errorMessage } from "../../common/errors.ts";
import type { Logger } from "../../common/logger.ts";

/** Lowers this process's CPU priority to `nice` (0 leaves it as started); a refusal is logged, not fatal. */
export function lowerPriority(nice: number, logger: Logger): void {
  if (nice === 0) return;
  try {
    os.setPriority(Math.max(os.getPriority(), nice));
    logger.info({ nice: os.getPriority() }, "CPU priority lowered below the gateway's");
  } catch (err) {
    logger.warn({ nice, err: errorMessage(err) }, "could not lower the CPU priority");
  }
}
