// Redriving dead letters back to the primary queue.
//
// A redriven copy of round r is published to the primary queue as round r+1
// (attempt 1), confirmed by the broker, logged as a REDRIVEN entry of round r+1,
// and only then acked off the DLQ; its history is released (left to expire) only
// after the broker has processed the ack. A crash before the ack leaves round r
// in the DLQ with its history retained and the REDRIVEN entry as the durable
// record that it was redriven: the next redrive acks that copy without another
// round (tests/redrive.test.ts, "acks a copy a gateway already redrove ...").
import type { GetMessage, Options } from "amqplib";
import type { Redis } from "ioredis";

import type { AttemptLog } from "../../../common/attempt-log.ts";
import type { Config } from "../../../common/config.ts";
import { HEADERS } from "../../../common/contract.ts";
import { recordEvent } from "../../../common/events.ts";
import { noTracing, type Tracing } from "../../../common/tracing.ts";
import { recordOperation, redrivenEntry, wasRedriven } from "./dead-letter-records.ts";
import { type DeadLetter, type RedriveFilter, type WalkDeps, walkMatching } from "./dead-letter-walk.ts";

export interface RedriveResult {
  matched: number;
  moved: number;
  /** Copies whose round had been redriven already (a redrive that died before acking them): acked, not moved. */
  alreadyRedriven: number;
  dryRun: boolean;
}

export async function redriveDeadLetters(
  deps: WalkDeps & {
    filter: RedriveFilter;
    /** Who asked (recorded with the operation). */
    by?: string;
    /** Runs between logging a redrive and acking its DLQ copy (tests stop a redrive there). */
    beforeAck?: (messageId: string) => Promise<void>;
    tracing?: Tracing;
  },
): Promise<RedriveResult> {
  const { filter, broker, log, redis, config, logger, tracing = noTracing } = deps;
  const dryRun = filter.dryRun ?? false;
  const { primary, exchange, routingKey } = broker.topology;
  let moved = 0;
  let alreadyRedriven = 0;
  const started = new Date();

  const matched = await walkMatching(deps, filter, async ({ msg, letter: d, ack }) => {
    const round = d.round + 1;
    if (await wasRedriven(log, d, round)) {
      alreadyRedriven++;
      if (!dryRun) ack();
      return;
    }
    if (dryRun) return;
    const options = nextRoundOptions(msg, round);
    const traceId = await tracing.redrive({ ...d, round }, msg.properties.headers, options, () =>
      broker.publish(exchange, routingKey, msg.content, options),
    );
    await recordRedrive(log, redis, config, d, round, traceId);
    await deps.beforeAck?.(d.messageId);
    ack();
    moved++;
  });

  await recordOperation(log, logger, "redrives", started, deps.by, filter, {
    matched,
    moved,
    alreadyRedriven,
    dryRun,
    queue: primary,
  });
  logger.info({ filter, matched, moved, alreadyRedriven, dryRun }, "dead letters redriven");
  return { matched, moved, alreadyRedriven, dryRun };
}

/** The publish options of a dead letter's copy for its next round: attempt 1, without the dead-letter headers. */
function nextRoundOptions(msg: GetMessage, round: number): Options.Publish & { headers: Record<string, unknown> } {
  const headers: Record<string, unknown> = { ...(msg.properties.headers ?? {}) };
  for (const k of [HEADERS.deadReason, HEADERS.deadAttempts, HEADERS.deadAt, HEADERS.consumerId, "x-death"]) delete headers[k];
  headers[HEADERS.attempt] = 1;
  headers[HEADERS.round] = round;
  return {
    persistent: true,
    contentType: msg.properties.contentType,
    messageId: msg.properties.messageId,
    timestamp: Math.floor(Date.now() / 1000),
    type: msg.properties.type,
    headers,
  };
}

async function recordRedrive(log: AttemptLog, redis: Redis, config: Config, d: DeadLetter, round: number, traceId?: string) {
  const now = new Date();
  await log.insert([
    redrivenEntry(d, round, { now, expiresAt: log.expiryFrom(now), maxAttempts: config.retry.maxAttempts }, traceId),
  ]);
  // The round before is still in the DLQ until the ack: the whole history, this entry too, stays.
  await log.retain([d.messageId]);
  await recordEvent(redis.pipeline(), config, {
    messageId: d.messageId,
    system: d.system,
    orderId: d.orderId,
    attempt: 0,
    round,
    status: "REDRIVEN",
    at: now.toISOString(),
  }).exec();
}
