// How expired attempt logs are deleted. On MongoDB a TTL index deletes documents past their
// `expiresAt`; on a server that refuses TTL indexes (FerretDB) a sweeper does the same on an
// interval, one process of several at a time.
import type { Collection } from "mongodb";

import type { Config } from "./config.ts";
import { errorMessage } from "./errors.ts";
import type { Logger } from "./logger.ts";

export type RetentionMode = "ttl-index" | "sweeper";

/** A sweep may take at most 1/SWEEP_DUTY_FACTOR of the time between sweeps. */
const SWEEP_DUTY_FACTOR = 50;

/** The sweeper's index, where the server answers range queries from indexes (not FerretDB). */
export const SWEEP_INDEX = "expiresAt";

/**
 * Creates the TTL index where the server takes one (and the configuration allows it), else the
 * sweeper's index if `sweepIndex`; says which mode results.
 */
export async function ensureRetention(
  collection: Pick<Collection, "createIndex">,
  config: Config,
  logger: Logger,
  opts: { sweepIndex: boolean },
): Promise<RetentionMode> {
  if (await serverSupportsTtl(collection, config, logger)) return "ttl-index";
  if (opts.sweepIndex) await collection.createIndex({ expiresAt: 1 }, { name: SWEEP_INDEX });
  return "sweeper";
}

async function serverSupportsTtl(collection: Pick<Collection, "createIndex">, config: Config, logger: Logger): Promise<boolean> {
  if (config.mongo.retention === "sweeper") return false;
  try {
    await collection.createIndex({ expiresAt: 1 }, { name: "expiresAt_ttl", expireAfterSeconds: 0 });
    return true;
  } catch (err) {
    if (config.mongo.retention === "ttl-index") throw err;
    logger.info(
      { reason: errorMessage(err) },
      "the log server refuses TTL indexes; expired attempt logs are deleted by a sweeper",
    );
    return false;
  }
}

/**
 * Runs `sweep` every SWEEP_INTERVAL_MS while `turn` says this process sweeps this time (one of
 * several consumers is enough), holding the turn for the delay before the sweep. Returns a stopper.
 */
export function scheduleSweeps(opts: {
  sweep: () => Promise<number>;
  turn: (holdMs: number) => Promise<boolean>;
  intervalMs: number;
  logger: Logger;
}): () => void {
  const { sweep, turn, intervalMs, logger } = opts;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const schedule = (delayMs: number) => {
    if (stopped) return;
    timer = setTimeout(() => void run(delayMs), delayMs);
    timer.unref();
  };
  // On a server without TTL indexes a sweep reads the whole collection; stretching the
  // interval to SWEEP_DUTY_FACTOR times the last sweep's duration bounds its share of the server.
  const run = async (heldMs: number) => {
    let next = intervalMs;
    try {
      if (await turn(heldMs)) {
        const started = performance.now();
        const n = await sweep();
        const took = performance.now() - started;
        next = Math.max(next, Math.round(took * SWEEP_DUTY_FACTOR));
        if (n > 0) logger.info({ deleted: n, tookMs: Math.round(took), nextInMs: next }, "expired attempt logs swept");
      }
    } catch (err) {
      logger.warn({ err: errorMessage(err) }, "attempt log sweep failed");
    }
    schedule(next);
  };
  schedule(intervalMs);
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
