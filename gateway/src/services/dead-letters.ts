// Peeking at and redriving the dead-letter queue.
//
// Both walk the DLQ with basic.get and manual acks on a private channel: what is
// not taken stays unacked and goes back to the queue, in order, when the channel
// closes. Messages one walk holds are invisible to another, so every walk holds
// the DLQ scan lock (and waits for it): a peek, a dry run or a redrive never
// counts while another holds part of the queue.
//
// A redriven copy of round r is published to the primary queue as round r+1
// (attempt 1), confirmed by the broker, logged as a REDRIVEN entry of round r+1,
// and only then acked off the DLQ; its history is released (left to expire) only
// after the broker has processed the ack. A crash before the ack leaves round r
// in the DLQ with its history retained and the REDRIVEN entry as the durable
// record that it was redriven: the next redrive acks that copy without another
// round (tests/redrive.test.ts, "acks a copy a gateway already redrove ...").
import type { Channel, GetMessage } from "amqplib";
import type { Redis } from "ioredis";

import type { AttemptLog, LogDocument } from "../../../common/attempt-log.ts";
import type { Broker } from "../../../common/broker.ts";
import type { Config } from "../../../common/config.ts";
import { HEADERS, orderMessageSchema, type System } from "../../../common/contract.ts";
import { eventsTopic, type ProcessingEvent } from "../../../common/events.ts";
import { counterKey, deadLetterScanLockKey } from "../../../common/keys.ts";
import type { Logger } from "../../../common/logger.ts";
import { noTracing, type Tracing } from "../../../common/tracing.ts";
import { badInput, DomainError, using } from "../errors.ts";
import { waitForLock } from "./redis-lock.ts";

export interface DeadLetter {
  messageId: string;
  system: System | null;
  orderId: number | null;
  reason: string;
  attempts: number;
  round: number;
  deadAt: string | null;
}

export interface RedriveFilter {
  system?: System | null;
  reason?: string | null;
  messageIds?: readonly string[] | null;
  limit?: number | null;
  dryRun?: boolean | null;
}

export interface RedriveResult {
  matched: number;
  moved: number;
  /** Copies whose round had been redriven already (a redrive that died before acking them): acked, not moved. */
  alreadyRedriven: number;
  dryRun: boolean;
}

/** The DLQ holds at most this many messages unacked at once while scanning. */
const SCAN_PREFETCH_LIMIT = 100_000;
/** How long a walk of the DLQ waits for the one in progress before giving up. */
const SCAN_WAIT_MS = 10_000;

function describe(msg: GetMessage): DeadLetter {
  const h = msg.properties.headers ?? {};
  let system: System | null = null;
  let orderId: number | null = null;
  let messageId = typeof msg.properties.messageId === "string" ? msg.properties.messageId : "";
  try {
    const parsed = orderMessageSchema.safeParse(JSON.parse(msg.content.toString("utf8")));
    if (parsed.success) {
      system = parsed.data.source.system;
      orderId = parsed.data.source.orderId;
      messageId = parsed.data.messageId;
    }
  } catch {
    // A rejected message may not be JSON at all; it is still listed.
  }
  return {
    messageId,
    system,
    orderId,
    reason: String(h[HEADERS.deadReason] ?? "unknown"),
    attempts: Number(h[HEADERS.deadAttempts] ?? 0) || 0,
    round: Number(h[HEADERS.round] ?? 0) || 0,
    deadAt: typeof h[HEADERS.deadAt] === "string" ? (h[HEADERS.deadAt] as string) : null,
  };
}

async function scan(channel: Channel, queue: string, visit: (msg: GetMessage) => Promise<boolean>): Promise<void> {
  for (let seen = 0; seen < SCAN_PREFETCH_LIMIT; seen++) {
    const msg = await channel.get(queue, { noAck: false });
    if (!msg) return;
    if (!(await visit(msg))) return;
  }
}

/** Runs a walk of the DLQ under the scan lock, waiting for the walk in progress. */
async function exclusively<T>(redis: Redis, config: Config, walk: () => Promise<T>): Promise<T> {
  const lock = await waitForLock(redis, deadLetterScanLockKey(config), config.gateway.publishLockTtlMs, SCAN_WAIT_MS);
  if (!lock)
    throw new DomainError(
      "DEAD_LETTERS_BUSY",
      `another request has been reading the dead-letter queue for over ${SCAN_WAIT_MS / 1000} s; try again when it finishes`,
    );
  try {
    return await walk();
  } finally {
    await lock.release();
  }
}

export async function peekDeadLetters(deps: {
  broker: Broker;
  redis: Redis;
  config: Config;
  first: number;
}): Promise<DeadLetter[]> {
  const { broker, redis, config, first } = deps;
  return exclusively(redis, config, () =>
    using("rabbitmq", () =>
      broker.withChannel(async (ch) => {
        const out: DeadLetter[] = [];
        await scan(ch, broker.topology.dlq, async (msg) => {
          out.push(describe(msg));
          return out.length < first;
        });
        return out;
      }),
    ),
  );
}

export async function redriveDeadLetters(deps: {
  filter: RedriveFilter;
  broker: Broker;
  log: AttemptLog;
  redis: Redis;
  config: Config;
  logger: Logger;
  /** Runs between logging a redrive and acking its DLQ copy (tests stop a redrive there). */
  beforeAck?: (messageId: string) => Promise<void>;
  tracing?: Tracing;
}): Promise<RedriveResult> {
  const { filter, broker, log, redis, config, logger, tracing = noTracing } = deps;
  const dryRun = filter.dryRun ?? false;
  const limit = filter.limit ?? Number.POSITIVE_INFINITY;
  if (filter.limit != null && (!Number.isInteger(filter.limit) || filter.limit < 1))
    throw badInput("limit must be a positive whole number", "limit");
  const ids = filter.messageIds ? new Set(filter.messageIds.map((id) => String(id).toLowerCase())) : undefined;
  if (ids && ids.size === 0) throw badInput("messageIds must not be empty when given", "messageIds");
  const { primary, exchange, routingKey, dlq } = broker.topology;
  let matched = 0;
  let moved = 0;
  let alreadyRedriven = 0;
  const started = new Date();
  // Acked off the DLQ: their histories are released once the broker has processed the acks.
  const acked: string[] = [];

  await exclusively(redis, config, () =>
    using("rabbitmq", () =>
      broker.withChannel(async (ch) => {
        try {
          await scan(ch, dlq, async (msg) => {
            const d = describe(msg);
            const hit =
              (!filter.system || d.system === filter.system) &&
              (!filter.reason || d.reason === filter.reason || d.reason.startsWith(`${filter.reason}:`)) &&
              (!ids || ids.has(d.messageId.toLowerCase()));
            if (!hit) return true;
            matched++;
            const round = d.round + 1;
            if (await wasRedriven(log, d, round)) {
              alreadyRedriven++;
              if (!dryRun) {
                ch.ack(msg);
                acked.push(d.messageId);
              }
              return matched < limit;
            }
            if (!dryRun) {
              const headers: Record<string, unknown> = { ...(msg.properties.headers ?? {}) };
              for (const k of [HEADERS.deadReason, HEADERS.deadAttempts, HEADERS.deadAt, HEADERS.consumerId, "x-death"])
                delete headers[k];
              headers[HEADERS.attempt] = 1;
              headers[HEADERS.round] = round;
              const options = {
                persistent: true,
                contentType: msg.properties.contentType,
                messageId: msg.properties.messageId,
                timestamp: Math.floor(Date.now() / 1000),
                type: msg.properties.type,
                headers,
              };
              const traceId = await tracing.redrive({ ...d, round }, msg.properties.headers, options, () =>
                broker.publish(exchange, routingKey, msg.content, options),
              );
              await recordRedrive(log, redis, config, d, round, traceId);
              await deps.beforeAck?.(d.messageId);
              ch.ack(msg);
              acked.push(d.messageId);
              moved++;
            }
            return matched < limit;
          });
        } finally {
          await releaseAcked(ch, log, logger, dlq, acked);
        }
      }),
    ),
  );

  await log.collection.db
    .collection("redrives")
    .insertOne({
      at: started,
      finishedAt: new Date(),
      filter: { ...filter, messageIds: filter.messageIds ? [...filter.messageIds] : null },
      matched,
      moved,
      alreadyRedriven,
      dryRun,
      queue: primary,
    })
    .catch((err) => logger.warn({ err: (err as Error).message }, "could not record the redrive"));
  logger.info({ filter, matched, moved, alreadyRedriven, dryRun }, "dead letters redriven");
  return { matched, moved, alreadyRedriven, dryRun };
}

/**
 * Whether this copy's round was redriven already: its REDRIVEN entry is the durable record,
 * kept as long as the copy is in the DLQ (its history is released only after the ack).
 */
async function wasRedriven(log: AttemptLog, d: DeadLetter, round: number): Promise<boolean> {
  // A copy without a message id cannot be told from another one.
  if (!d.messageId) return false;
  const found = await log.collection.findOne({ messageId: d.messageId, round, attempt: 0, status: "REDRIVEN" });
  return found !== null;
}

/**
 * Releases the histories of the copies acked off the DLQ, once the broker has processed the
 * acks (a synchronous method on the same channel answers after them). A crash before this point
 * leaves those histories retained, never one of a message still in the DLQ released.
 */
async function releaseAcked(ch: Channel, log: AttemptLog, logger: Logger, dlq: string, acked: string[]): Promise<void> {
  if (acked.length === 0) return;
  try {
    await ch.checkQueue(dlq);
  } catch (err) {
    logger.warn({ err: (err as Error).message, messages: acked.length }, "acks not confirmed; histories stay retained");
    return;
  }
  await log
    .release(acked)
    .catch((err) => logger.warn({ err: (err as Error).message, messages: acked.length }, "could not release redriven histories"));
}

/** A REDRIVEN entry opens the new round in the message's history and records that the round before was redriven. */
async function recordRedrive(log: AttemptLog, redis: Redis, config: Config, d: DeadLetter, round: number, traceId?: string) {
  const now = new Date();
  const doc: LogDocument = {
    messageId: d.messageId,
    round,
    attempt: 0,
    status: "REDRIVEN",
    requiredAttempts: null,
    maxAttempts: config.retry.maxAttempts,
    system: d.system,
    orderId: d.orderId,
    source: { system: d.system, orderId: d.orderId, publishedAt: null },
    order: null,
    error: `redriven after ${d.attempts} attempts (${d.reason})`,
    processedAt: now,
    expiresAt: log.expiryFrom(now),
    retained: false,
    durationMs: null,
    consumerId: "gateway",
    ...(traceId ? { traceId } : {}),
  };
  await log.insert([doc]);
  // The round before is still in the DLQ until the ack: the whole history, this entry too, stays.
  await log.retain([d.messageId]);
  const event: ProcessingEvent = {
    messageId: d.messageId,
    system: d.system,
    orderId: d.orderId,
    attempt: 0,
    round,
    status: "REDRIVEN",
    at: now.toISOString(),
  };
  await redis
    .pipeline()
    .publish(eventsTopic(config), JSON.stringify(event))
    .hincrby(counterKey(config), `${d.system ?? "UNKNOWN"}:REDRIVEN`, 1)
    .exec();
}
