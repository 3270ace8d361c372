// Discarding dead letters for good.
//
// A discarded copy of round r is logged as a DISCARDED entry of round r (attempt 0) and
// only then acked off the DLQ: a message never leaves without that entry. The entry is
// idempotent (the log's unique attempt index), so a discard that died before the ack is
// finished by the next one, which finds the entry and acks the copy
// (tests/dead-letter-groups.test.ts, "finishes a discard that died before its ack").
import type { Redis } from "ioredis";

import type { AttemptLog } from "../../../common/attempt-log.ts";
import type { Config } from "../../../common/config.ts";
import { recordEvent } from "../../../common/events.ts";
import { badInput } from "../errors.ts";
import { discardedEntry, recordOperation } from "./dead-letter-records.ts";
import { type DeadLetter, type RedriveFilter, type WalkDeps, walkMatching } from "./dead-letter-walk.ts";

export interface DiscardResult {
  matched: number;
  discarded: number;
  dryRun: boolean;
  /** The first DISCARD_LISTED matching dead letters: what was (or, in a dry run, would be) discarded. */
  letters: DeadLetter[];
}

/** How many of the matching dead letters a discard lists in its answer. */
export const DISCARD_LISTED = 100;

/**
 * Removes the matching dead letters for good: each is logged as DISCARDED, then acked off the
 * DLQ. A filter is required (system, reason or message ids): an empty one would empty the queue.
 */
export async function discardDeadLetters(
  deps: WalkDeps & {
    filter: RedriveFilter;
    by?: string;
    /** Runs between logging a discard and acking its DLQ copy (tests stop a discard there). */
    beforeAck?: (messageId: string) => Promise<void>;
  },
): Promise<DiscardResult> {
  const { filter, log, redis, config, logger } = deps;
  if (!filter.system && !filter.reason && !filter.messageIds)
    throw badInput("give a system, a reason or messageIds: a discard never takes the whole queue", "reason");
  const dryRun = filter.dryRun ?? false;
  let discarded = 0;
  const letters: DeadLetter[] = [];
  const started = new Date();

  const matched = await walkMatching(deps, filter, async ({ letter: d, ack }) => {
    if (letters.length < DISCARD_LISTED) letters.push(d);
    if (dryRun) return;
    await recordDiscard(log, redis, config, d);
    await deps.beforeAck?.(d.messageId);
    ack();
    discarded++;
  });

  await recordOperation(log, logger, "discards", started, deps.by, filter, {
    matched,
    discarded,
    dryRun,
    queue: deps.broker.topology.dlq,
  });
  logger.info({ filter, matched, discarded, dryRun }, "dead letters discarded");
  return { matched, discarded, dryRun, letters };
}

/** Logs the copy's DISCARDED entry, keeps its history retained, and emits the event the first time only. */
async function recordDiscard(log: AttemptLog, redis: Redis, config: Config, d: DeadLetter) {
  const now = new Date();
  const doc = discardedEntry(d, { now, expiresAt: log.expiryFrom(now), maxAttempts: config.retry.maxAttempts });
  // A discard that died before the ack logged it already: the entry is there, count it once.
  const inserted = await log.insert([doc]);
  // The copy is still in the DLQ until the ack: the whole history, this entry too, stays.
  await log.retain([d.messageId]);
  if (inserted === 0) return;
  await recordEvent(redis.pipeline(), config, {
    messageId: d.messageId,
    system: doc.system,
    orderId: doc.orderId,
    attempt: 0,
    round: d.round,
    status: "DISCARDED",
    at: now.toISOString(),
  }).exec();
}
