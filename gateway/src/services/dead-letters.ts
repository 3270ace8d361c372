// Peeking at and redriving the dead-letter queue.
//
// Both walk the DLQ with basic.get and manual acks on a private channel: what is
// not taken stays unacked and goes back to the queue, in order, when the channel
// closes. A redriven message is published to the primary queue as a new round
// (attempt 1), confirmed by the broker, logged, and only then acked off the DLQ:
// a crash in between leaves it in the DLQ (and at worst redriven twice), never lost.
import type { Channel, GetMessage } from "amqplib";

import type { AttemptLog, LogDocument } from "../../../common/attempt-log.ts";
import type { Broker } from "../../../common/broker.ts";
import type { Config } from "../../../common/config.ts";
import { HEADERS, orderMessageSchema, type System } from "../../../common/contract.ts";
import { eventsTopic, type ProcessingEvent } from "../../../common/events.ts";
import { counterKey } from "../../../common/keys.ts";
import type { Logger } from "../../../common/logger.ts";
import { badInput, using } from "../errors.ts";

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
  dryRun: boolean;
}

/** The DLQ holds at most this many messages unacked at once while scanning. */
const SCAN_PREFETCH_LIMIT = 100_000;

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

export async function peekDeadLetters(broker: Broker, first: number): Promise<DeadLetter[]> {
  return using("rabbitmq", () =>
    broker.withChannel(async (ch) => {
      const out: DeadLetter[] = [];
      await scan(ch, broker.topology.dlq, async (msg) => {
        out.push(describe(msg));
        return out.length < first;
      });
      return out;
    }),
  );
}

export async function redriveDeadLetters(deps: {
  filter: RedriveFilter;
  broker: Broker;
  log: AttemptLog;
  redis: import("ioredis").Redis;
  config: Config;
  logger: Logger;
}): Promise<RedriveResult> {
  const { filter, broker, log, redis, config, logger } = deps;
  const dryRun = filter.dryRun ?? false;
  const limit = filter.limit ?? Number.POSITIVE_INFINITY;
  if (filter.limit != null && (!Number.isInteger(filter.limit) || filter.limit < 1))
    throw badInput("limit must be a positive whole number", "limit");
  const ids = filter.messageIds ? new Set(filter.messageIds.map((id) => String(id).toLowerCase())) : undefined;
  if (ids && ids.size === 0) throw badInput("messageIds must not be empty when given", "messageIds");
  const { primary, exchange, routingKey, dlq } = broker.topology;
  let matched = 0;
  let moved = 0;
  const started = new Date();

  await using("rabbitmq", () =>
    broker.withChannel(async (ch) => {
      await scan(ch, dlq, async (msg) => {
        const d = describe(msg);
        const hit =
          (!filter.system || d.system === filter.system) &&
          (!filter.reason || d.reason === filter.reason || d.reason.startsWith(`${filter.reason}:`)) &&
          (!ids || ids.has(d.messageId.toLowerCase()));
        if (!hit) return true;
        matched++;
        if (!dryRun) {
          const headers: Record<string, unknown> = { ...(msg.properties.headers ?? {}) };
          for (const k of [HEADERS.deadReason, HEADERS.deadAttempts, HEADERS.deadAt, HEADERS.consumerId, "x-death"])
            delete headers[k];
          const round = d.round + 1;
          headers[HEADERS.attempt] = 1;
          headers[HEADERS.round] = round;
          await broker.publish(exchange, routingKey, msg.content, {
            persistent: true,
            contentType: msg.properties.contentType,
            messageId: msg.properties.messageId,
            timestamp: Math.floor(Date.now() / 1000),
            type: msg.properties.type,
            headers,
          });
          await recordRedrive(log, redis, config, d, round);
          ch.ack(msg);
          moved++;
        }
        return matched < limit;
      });
    }),
  );

  await log.collection.db
    .collection("redrives")
    .insertOne({
      at: started,
      finishedAt: new Date(),
      filter: { ...filter, messageIds: filter.messageIds ? [...filter.messageIds] : null },
      matched,
      moved,
      dryRun,
      queue: primary,
    })
    .catch((err) => logger.warn({ err: (err as Error).message }, "could not record the redrive"));
  logger.info({ filter, matched, moved, dryRun }, "dead letters redriven");
  return { matched, moved, dryRun };
}

/** A REDRIVEN entry opens the new round in the message's history; the history may expire again. */
async function recordRedrive(log: AttemptLog, redis: import("ioredis").Redis, config: Config, d: DeadLetter, round: number) {
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
  };
  await log.insert([doc]);
  await log.release([d.messageId]);
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
