// Walking the dead-letter queue.
//
// Every walk reads the DLQ with basic.get and manual acks on a private channel: what is
// not taken stays unacked and goes back to the queue, in order, when the channel
// closes. Messages one walk holds are invisible to another, so every walk holds
// the DLQ scan lock (and waits for it): a peek, a dry run, a redrive or a discard never
// counts while another holds part of the queue. Redrive and discard share the walk over
// the matching dead letters (walkMatching), which releases the histories of the copies
// acked off the DLQ and takes them out of their dead-letter groups.
import type { Channel, GetMessage } from "amqplib";
import type { Redis } from "ioredis";

import type { AttemptLog } from "../../../common/attempt-log.ts";
import type { Broker } from "../../../common/broker.ts";
import type { Config } from "../../../common/config.ts";
import { HEADERS, orderMessageSchema, type System } from "../../../common/contract.ts";
import {
  groupReasonOf,
  isRejection,
  reasonMatches,
  removeFromGroups,
  UNKNOWN_REASON,
} from "../../../common/dead-letter-groups.ts";
import { deadLetterScanLockKey } from "../../../common/keys.ts";
import type { Logger } from "../../../common/logger.ts";
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

export interface WalkDeps {
  broker: Broker;
  log: AttemptLog;
  redis: Redis;
  config: Config;
  logger: Logger;
}

/** A walk's hold on one matching copy. */
export interface Hold {
  msg: GetMessage;
  letter: DeadLetter;
  /** Takes the copy off the DLQ; its history is released and its group entry removed once the broker has processed the ack. */
  ack(): void;
}

/** The DLQ holds at most this many messages unacked at once while scanning. */
const SCAN_PREFETCH_LIMIT = 100_000;
/** How long a walk of the DLQ waits for the one in progress before giving up. */
const SCAN_WAIT_MS = 10_000;

export function describe(msg: GetMessage): DeadLetter {
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
export const groupSystemOf = (d: DeadLetter): System | null => (isRejection(d.group) ? null : d.system);

/** The group member a dead letter counts as; deadAt is null when its header is missing or unreadable. */
export function groupMemberOf(d: DeadLetter): { system: System | null; reason: string; messageId: string; deadAt: Date | null } {
  const deadAt = d.deadAt ? new Date(d.deadAt) : null;
  return {
    system: groupSystemOf(d),
    reason: d.group,
    messageId: d.messageId,
    deadAt: deadAt && !Number.isNaN(deadAt.getTime()) ? deadAt : null,
  };
}

/** Gets up to `max` messages in queue order, while `visit` asks for more. */
export async function scan(
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
export async function exclusively<T>(redis: Redis, config: Config, walk: () => Promise<T>): Promise<T> {
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

/** Whether a dead letter falls under a redrive's or a discard's filter. */
export function matcher(filter: RedriveFilter): (d: DeadLetter) => boolean {
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
export async function walkMatching(
  deps: WalkDeps,
  filter: RedriveFilter,
  visit: (hold: Hold, ch: Channel) => Promise<void>,
): Promise<number> {
  const { broker, redis, config } = deps;
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
              const ack = () => {
                ch.ack(msg);
                acked.push(letter);
              };
              await visit({ msg, letter, ack }, ch);
              return matched < limit;
            },
            messageCount,
          );
        } finally {
          await releaseAcked(ch, deps, acked);
        }
      }),
    ),
  );
  return matched;
}

/**
 * Releases the histories of the copies acked off the DLQ and takes them out of their groups,
 * once the broker has processed the acks (a synchronous method on the same channel answers
 * after them). A crash before this point leaves those histories retained and the groups
 * counting them, never one of a message still in the DLQ released or uncounted.
 */
async function releaseAcked(ch: Channel, deps: WalkDeps, acked: DeadLetter[]): Promise<void> {
  const { log, redis, config, logger } = deps;
  if (acked.length === 0) return;
  try {
    await ch.checkQueue(deps.broker.topology.dlq);
  } catch (err) {
    logger.warn({ err: (err as Error).message, messages: acked.length }, "acks not confirmed; histories stay retained");
    return;
  }
  await removeFromGroups(redis, config, acked.map(groupMemberOf)).catch((err) =>
    logger.warn({ err: (err as Error).message, messages: acked.length }, "could not update the dead-letter groups"),
  );
  await log
    .release(acked.map((d) => d.messageId))
    .catch((err) => logger.warn({ err: (err as Error).message, messages: acked.length }, "could not release acked histories"));
}
