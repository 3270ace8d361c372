// What a processed delivery leaves behind in the stores, shared by the consumer
// and the benchmark that replays its batch steps.
import type { Redis } from "ioredis";

import type { LogDocument } from "../../common/attempt-log.ts";
import type { DecodedDelivery } from "../../common/contract.ts";
import type { EndputClient } from "../../common/stores.ts";

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

export interface Counted {
  /** Marks the attempt as counted (countedKey). */
  key: string;
  /** The counter hash field (counterField in common/keys.ts). */
  field: string;
  /** The event, serialised. */
  event: string;
  /** For a dead letter: the group it joins (common/dead-letter-groups.ts). */
  dead?: { groupKey: string; group: string; messageId: string; deadAt: Date };
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

/** Endput rows for successful deliveries, one statement; a row already there (a redelivery) is left as it is. */
export function insertEndputRows(endput: EndputClient, deliveries: DecodedDelivery[]): Promise<number> {
  const m = deliveries.map((d) => d.message);
  return endput.$executeRaw`
    insert into orders (source_system, source_order_id, message_id, product, price, security_check, attempts)
    select * from unnest(
      ${m.map((x) => x.source.system)}::source_system[], ${m.map((x) => x.source.orderId)}::int[],
      ${m.map((x) => x.messageId)}::uuid[], ${m.map((x) => x.order.product)}::text[],
      ${m.map((x) => x.order.price)}::numeric[], ${m.map((x) => x.order.securityCheck)}::boolean[],
      ${deliveries.map((d) => d.attempt)}::int[])
    on conflict (source_system, source_order_id) do nothing`;
}

/** The attempt-log fields that come from a decoded delivery. */
export function deliveryLogFields({ message, attempt, round }: DecodedDelivery) {
  return {
    round,
    attempt,
    requiredAttempts: message.requiredAttempts,
    system: message.source.system,
    orderId: message.source.orderId,
    source: { ...message.source, publishedAt: new Date(message.publishedAt) },
    order: message.order,
  } satisfies Partial<LogDocument>;
}
