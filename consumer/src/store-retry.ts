// Store writes hold the batch: a store that is down is retried with backoff until it is back (no
// ack, so prefetch stops new deliveries), for as long as the batch's channel lives ("holds batches
// while the log server or the endput database is down and recovers", fault scenario 4). A value a
// store refuses for good rejects only the message that carries it (store-errors.ts).
import { errorMessage, sleep } from "../../common/errors.ts";
import type { Logger } from "../../common/logger.ts";
import type { ConsumerMetrics } from "./metrics.ts";
import type { StoreRefused } from "./store-errors.ts";

/** The channel a batch came on is gone or condemned: its deliveries are redelivered, stop working on them. */
export class ChannelGone extends Error {
  override name = "ChannelGone";
}

export type Durably = <T>(
  alive: () => boolean,
  step: string,
  fn: () => Promise<T>,
  refusal?: (err: unknown) => StoreRefused | undefined,
) => Promise<T>;

/**
 * Runs a step until it succeeds; gives up (ChannelGone) only when the batch's channel is no longer
 * `alive`, or when `refusal` says the store refused the write for good (it throws that refusal).
 */
export function createStoreRetry(deps: { logger: Logger; metrics?: ConsumerMetrics | undefined }): Durably {
  const { logger, metrics } = deps;
  return async function durably(alive, step, fn, refusal = () => undefined) {
    let delay = 100;
    for (let tries = 1; ; tries++) {
      if (!alive()) throw new ChannelGone();
      try {
        return await fn();
      } catch (err) {
        if (!alive()) throw new ChannelGone();
        const refused = refusal(err);
        if (refused) throw refused;
        logger.warn({ step, tries, retryInMs: delay, err: errorMessage(err) }, "store write failed; holding the batch");
        metrics?.storeErrors.inc({ step });
        await sleep(delay);
        delay = Math.min(delay * 2, 5000);
      }
    }
  };
}
