// Processing events and their counters: what an attempt's outcome announces and counts, and how
// both are written to Redis. Events go out on one Redis channel; every gateway subscribes to it
// through graphql-yoga's Redis event target, so all instances see all events. Each event adds one
// to its counter field (counterField in keys.ts), which the stats read.
import type { ChainableCommander, Redis } from "ioredis";

import type { Config } from "./config.ts";
import type { ProcessingStatus, System } from "./contract.ts";
import { deadLetterGroupsKey } from "./dead-letter-groups.ts";
import { countedKey, counterField, counterKey } from "./keys.ts";

export interface ProcessingEvent {
  messageId: string;
  system: System | null;
  orderId: number | null;
  attempt: number;
  round: number;
  status: ProcessingStatus;
  at: string;
  error?: string;
}

/** The pub/sub topic (and Redis channel) of processing events. */
export function eventsTopic(config: Config): string {
  return `${config.redis.prefix}:processing-events`;
}

/** The counter field an event adds one to: a message whose system could not be read counts under UNKNOWN. */
export function eventCounterField(event: ProcessingEvent): string {
  return counterField(event.system, event.status);
}

/**
 * Queues an event and its counter's increment on a pipeline or transaction, so that both go in
 * one round trip. For a writer that makes the write once-only itself (a redrive or a discard,
 * behind its attempt-log insert); the consumer counts through countEventsOnce.
 */
export function recordEvent<T extends ChainableCommander>(multi: T, config: Config, event: ProcessingEvent): T {
  multi.publish(eventsTopic(config), JSON.stringify(event));
  multi.hincrby(counterKey(config), eventCounterField(event), 1);
  return multi;
}

/**
 * How long Redis remembers that an attempt was counted. Only the copy that owns the
 * attempt counts it, and only a redelivery of that copy (its batch not committed)
 * asks again: a day covers a batch held by a store outage.
 */
const COUNTED_TTL_SECONDS = 24 * 3600;

// Per attempt: marks it counted and, only the first time, adds it to its counter, publishes
// its event and, for a dead letter, adds it to its dead-letter group. One script, so the mark,
// the count and the group are never apart. KEYS: the counters, the set of group names, then
// the n counted marks, then n group keys (a dead letter's group; any key for another attempt).
const COUNT_SCRIPT = `
local n = tonumber(ARGV[3])
local counted = 0
for i = 1, n do
  if redis.call('SET', KEYS[2 + i], '1', 'NX', 'EX', ARGV[2]) then
    local a = 3 + (i - 1) * 5
    redis.call('HINCRBY', KEYS[1], ARGV[a + 1], 1)
    redis.call('PUBLISH', ARGV[1], ARGV[a + 2])
    if ARGV[a + 3] ~= '' then
      redis.call('ZADD', KEYS[2 + n + i], ARGV[a + 4], ARGV[a + 3])
      redis.call('SADD', KEYS[2], ARGV[a + 5])
    end
    counted = counted + 1
  end
end
return counted`;

/** For a dead letter: the group it joins (dead-letter-groups.ts). */
export interface DeadLetterEntry {
  groupKey: string;
  group: string;
  messageId: string;
  deadAt: Date;
}

export interface Counted {
  /** Marks the attempt as counted (countedKey). */
  key: string;
  /** The counter hash field (eventCounterField). */
  field: string;
  /** The event, serialised. */
  event: string;
  dead?: DeadLetterEntry;
}

/**
 * Counts each attempt and publishes its event exactly once, however often its batch
 * is redelivered, adding each dead letter to its group at the same time; returns how
 * many were counted now.
 */
export async function countOnce(
  redis: Redis,
  keys: { counter: string; groups: string },
  topic: string,
  attempts: Counted[],
): Promise<number> {
  if (attempts.length === 0) return 0;
  const argv: (string | number)[] = [topic, COUNTED_TTL_SECONDS, attempts.length];
  for (const a of attempts)
    argv.push(a.field, a.event, a.dead?.messageId ?? "", a.dead?.deadAt.getTime() ?? 0, a.dead?.group ?? "");
  const groupKeys = attempts.map((a) => a.dead?.groupKey ?? a.key);
  return (await redis.eval(
    COUNT_SCRIPT,
    2 + 2 * attempts.length,
    keys.counter,
    keys.groups,
    ...attempts.map((a) => a.key),
    ...groupKeys,
    ...argv,
  )) as number;
}

/** An event as countOnce takes it: marked under its attempt and outcome (countedKey). */
export function countedEvent(config: Config, event: ProcessingEvent, dead?: DeadLetterEntry): Counted {
  const { messageId, round, attempt, status } = event;
  return {
    key: countedKey(config, messageId, round, attempt, status),
    field: eventCounterField(event),
    event: JSON.stringify(event),
    ...(dead ? { dead } : {}),
  };
}

/** countOnce for the events of a batch's attempts, each with the dead-letter group it joins, if any. */
export function countEventsOnce(
  redis: Redis,
  config: Config,
  attempts: { event: ProcessingEvent; dead?: DeadLetterEntry | undefined }[],
): Promise<number> {
  const keys = { counter: counterKey(config), groups: deadLetterGroupsKey(config) };
  return countOnce(
    redis,
    keys,
    eventsTopic(config),
    attempts.map((a) => countedEvent(config, a.event, a.dead)),
  );
}
