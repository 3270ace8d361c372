// Peeking at, redriving and discarding the dead-letter queue.
//
// All of them walk the DLQ with basic.get and manual acks on a private channel: what is
// not taken stays unacked and goes back to the queue, in order, when the channel
// closes. Messages one walk holds are invisible to another, so every walk holds
// the DLQ scan lock (and waits for it): a peek, a dry run, a redrive or a discard never
// counts while another holds part of the queue. Redrive and discard share the walk over
// the matching dead letters (walkMatching), which releases the histories of the copies
// acked off the DLQ and takes them out of their dead-letter groups.
//
// A redriven copy of round r is published to the primary queue as round r+1
// (attempt 1), confirmed by the broker, logged as a REDRIVEN entry of round r+1,
// and only then acked off the DLQ; its history is released (left to expire) only
// after the broker has processed the ack. A crash before the ack leaves round r
// in the DLQ with its history retained and the REDRIVEN entry as the durable
// record that it was redriven: the next redrive acks that copy without another
// round (tests/redrive.test.ts, "acks a copy a gateway already redrove ...").
//
// A discarded copy of round r is logged as a DISCARDED entry of round r (attempt 0) and
// only then acked off the DLQ: a message never leaves without that entry. The entry is
// idempotent (the log's unique attempt index), so a discard that died before the ack is
// finished by the next one, which finds the entry and acks the copy
// (tests/dead-letter-groups.test.ts, "finishes a discard that died before its ack").
import type { Channel, GetMessage } from "amqplib";
import type { Redis } from "ioredis";

import type { AttemptLog, LogDocument } from "../../../common/attempt-log.ts";
import type { Broker } from "../../../common/broker.ts";
import type { Config } from "../../../common/config.ts";
import { HEADERS, orderMessageSchema, type System } from "../../../common/contract.ts";
import {
  type DeadLetterGroup,
  groupReasonOf,
  isRejection,
  readGroups,
  reasonMatches,
  removeFromGroups,
  UNKNOWN_REASON,
} from "../../../common/dead-letter-groups.ts";
import { eventsTopic, type ProcessingEvent } from "../../../common/events.ts";
import { counterField, counterKey, deadLetterScanLockKey } from "../../../common/keys.ts";
import type { Logger } from "../../../common/logger.ts";
import { noTracing, type Tracing } from "../../../common/tracing.ts";
import { badInput, DomainError, using } from "../errors.ts";
import { waitForLock } from "./redis-lock.ts";

export interface DeadLetter {
  messageId: string;
  system: System | null;
  orderId: number | null;
  /** The x-dead-reason header as the consumer wrote it. */
  reason: string;
  /** Its group's reason: the header's stable classification (common/dead-letter-groups.ts). */
  group: string;
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
  const reason = String(h[HEADERS.deadReason] ?? UNKNOWN_REASON);
  const group = groupReasonOf(h[HEADERS.deadReason] == null ? null : reason);
  // The consumer names a rejection by the copy's message id property, which it always sets on the dead letter.
  if (isRejection(group) && typeof msg.properties.messageId === "string") messageId = msg.properties.messageId;
  return {
    messageId,
    system,
    orderId,
    reason,
    group,
    attempts: Number(h[HEADERS.deadAttempts] ?? 0) || 0,
    round: Number(h[HEADERS.round] ?? 0) || 0,
    deadAt: typeof h[HEADERS.deadAt] === "string" ? (h[HEADERS.deadAt] as string) : null,
  };
}

/** The system a dead letter is grouped under: the consumer could not read a rejected one's. */
const groupSystemOf = (d: DeadLetter): System | null => (isRejection(d.group) ? null : d.system);

/** Gets up to `max` messages in queue order, while `visit` asks for more. */
async function scan(
  channel: Channel,
  queue: string,
  visit: (msg: GetMessage) => Promise<boolean>,
  max = SCAN_PREFETCH_LIMIT,
): Promise<void> {
  for (let seen = 0; seen < Math.min(max, SCAN_PREFETCH_LIMIT); seen++) {
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

interface WalkDeps {
  broker: Broker;
  log: AttemptLog;
  redis: Redis;
  config: Config;
  logger: Logger;
}

/** A walk's hold on one matching copy. */
interface Hold {
  msg: GetMessage;
  letter: DeadLetter;
  /** Takes the copy off the DLQ; its history is released and its group entry removed once the broker has processed the ack. */
  ack(): void;
}

/** Whether a dead letter falls under a redrive's or a discard's filter. */
function matcher(filter: RedriveFilter): (d: DeadLetter) => boolean {
  if (filter.limit != null && (!Number.isInteger(filter.limit) || filter.limit < 1))
    throw badInput("limit must be a positive whole number", "limit");
  const ids = filter.messageIds ? new Set(filter.messageIds.map((id) => String(id).toLowerCase())) : undefined;
  if (ids && ids.size === 0) throw badInput("messageIds must not be empty when given", "messageIds");
  return (d) =>
    (!filter.system || d.system === filter.system) &&
    (!filter.reason || reasonMatches(d.reason, filter.reason) || reasonMatches(d.group, filter.reason)) &&
    (!ids || ids.has(d.messageId.toLowerCase()));
}

/**
 * Walks the DLQ under the scan lock and hands every copy that matches the filter to `visit`,
 * up to the filter's limit; returns how many matched.
 */
async function walkMatching(deps: WalkDeps, filter: RedriveFilter, visit: (hold: Hold, ch: Channel) => Promise<void>) {
  const { broker, log, redis, config, logger } = deps;
  const matches = matcher(filter);
  const limit = filter.limit ?? Number.POSITIVE_INFINITY;
  let matched = 0;
  // Acked off the DLQ: released and taken out of their groups once the broker has processed the acks.
  const acked: DeadLetter[] = [];
  await exclusively(redis, config, () =>
    using("rabbitmq", () =>
      broker.withChannel(async (ch) => {
        // Only what the DLQ held when the walk began (the lock means no other walk holds any of it):
        // a copy a consumer dead-letters meanwhile (a redriven one failing again) waits for the next
        // walk instead of going round again in this one ("walks only the dead letters there when it began").
        const { messageCount } = await ch.checkQueue(broker.topology.dlq);
        try {
          await scan(
            ch,
            broker.topology.dlq,
            async (msg) => {
              const letter = describe(msg);
              if (!matches(letter)) return true;
              matched++;
              await visit(
                {
                  msg,
                  letter,
                  ack: () => {
                    ch.ack(msg);
                    acked.push(letter);
                  },
                },
                ch,
              );
              return matched < limit;
            },
            messageCount,
          );
        } finally {
          await releaseAcked(ch, log, redis, config, logger, broker.topology.dlq, acked);
        }
      }),
    ),
  );
  return matched;
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
    const headers: Record<string, unknown> = { ...(msg.properties.headers ?? {}) };
    for (const k of [HEADERS.deadReason, HEADERS.deadAttempts, HEADERS.deadAt, HEADERS.consumerId, "x-death"]) delete headers[k];
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

/** Redrives and discards are recorded beside the attempt log, in `redrives` and `discards`. */
/** Records a redrive or a discard: who asked, when, with which filter, and what it did. */
async function recordOperation(
  log: AttemptLog,
  logger: Logger,
  collection: "redrives" | "discards",
  at: Date,
  by: string | undefined,
  filter: RedriveFilter,
  outcome: Record<string, unknown>,
) {
  const doc = {
    at,
    finishedAt: new Date(),
    by: by ?? null,
    filter: { ...filter, messageIds: filter.messageIds ? [...filter.messageIds] : null },
    ...outcome,
  };
  await log.collection.db
    .collection(collection)
    .insertOne(doc)
    .catch((err) => logger.warn({ err: (err as Error).message, collection }, "could not record the operation"));
}

/** The dead-letter groups (common/dead-letter-groups.ts), read from Redis without walking the DLQ. */
export function deadLetterGroups(deps: { redis: Redis; config: Config; system?: System | null }): Promise<DeadLetterGroup[]> {
  return using("redis", () => readGroups(deps.redis, deps.config, deps.system));
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
 * Releases the histories of the copies acked off the DLQ and takes them out of their groups,
 * once the broker has processed the acks (a synchronous method on the same channel answers
 * after them). A crash before this point leaves those histories retained and the groups
 * counting them, never one of a message still in the DLQ released or uncounted.
 */
async function releaseAcked(
  ch: Channel,
  log: AttemptLog,
  redis: Redis,
  config: Config,
  logger: Logger,
  dlq: string,
  acked: DeadLetter[],
): Promise<void> {
  if (acked.length === 0) return;
  try {
    await ch.checkQueue(dlq);
  } catch (err) {
    logger.warn({ err: (err as Error).message, messages: acked.length }, "acks not confirmed; histories stay retained");
    return;
  }
  const members = acked.map((d) => ({
    system: groupSystemOf(d),
    reason: d.group,
    messageId: d.messageId,
    deadAt: d.deadAt ? new Date(d.deadAt) : null,
  }));
  await removeFromGroups(redis, config, members).catch((err) =>
    logger.warn({ err: (err as Error).message, messages: acked.length }, "could not update the dead-letter groups"),
  );
  await log
    .release(acked.map((d) => d.messageId))
    .catch((err) => logger.warn({ err: (err as Error).message, messages: acked.length }, "could not release acked histories"));
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
    .hincrby(counterKey(config), counterField(d.system, "REDRIVEN"), 1)
    .exec();
}

/**
 * A DISCARDED entry closes the copy's round in its history: written (idempotently) before the
 * copy is acked, so a message never leaves the DLQ without it.
 */
async function recordDiscard(log: AttemptLog, redis: Redis, config: Config, d: DeadLetter) {
  const now = new Date();
  // As the consumer logged and counted it: a rejected message under no system.
  const system = groupSystemOf(d);
  const orderId = system ? d.orderId : null;
  const doc: LogDocument = {
    messageId: d.messageId,
    round: d.round,
    attempt: 0,
    status: "DISCARDED",
    requiredAttempts: null,
    maxAttempts: config.retry.maxAttempts,
    system,
    orderId,
    source: { system, orderId, publishedAt: null },
    order: null,
    error: `discarded after ${d.attempts} attempts (${d.reason})`,
    processedAt: now,
    expiresAt: log.expiryFrom(now),
    retained: false,
    durationMs: null,
    consumerId: "gateway",
  };
  // A discard that died before the ack logged it already: the entry is there, count it once.
  const inserted = await log.insert([doc]);
  // The copy is still in the DLQ until the ack: the whole history, this entry too, stays.
  await log.retain([d.messageId]);
  if (inserted === 0) return;
  const event: ProcessingEvent = {
    messageId: d.messageId,
    system,
    orderId,
    attempt: 0,
    round: d.round,
    status: "DISCARDED",
    at: now.toISOString(),
  };
  await redis
    .pipeline()
    .publish(eventsTopic(config), JSON.stringify(event))
    .hincrby(counterKey(config), counterField(system, "DISCARDED"), 1)
    .exec();
}
