// What a processed delivery leaves behind in the stores, shared by the consumer
// and the benchmark that replays its batch steps.
import type { Redis } from "ioredis";

import type { LogDocument } from "../../common/attempt-log.ts";
import type { DecodedDelivery } from "../../common/contract.ts";
import type { EndputClient } from "../../common/stores.ts";

/** How long a claim outlives its attempt: later copies of it are recognised for this long. */
const CLAIM_TTL_SECONDS = 24 * 3600;

// Claims each key for its copy unless another copy holds it; 1 = this copy owns the attempt.
const CLAIM_SCRIPT = `
local out = {}
for i, key in ipairs(KEYS) do
  local copy = ARGV[i + 1]
  local owner = redis.call('GET', key)
  if not owner then
    redis.call('SET', key, copy, 'EX', ARGV[1])
    out[i] = 1
  elseif owner == copy then
    out[i] = 1
  else
    out[i] = 0
  end
end
return out`;

/**
 * Claims attempts (keys) for the physical copies that carry them, atomically: true where
 * the copy owns the attempt (it claimed it now, or claimed it before a redelivery).
 */
export async function claimAttempts(redis: Redis, keys: string[], copies: string[]): Promise<boolean[]> {
  if (keys.length === 0) return [];
  const owned = (await redis.eval(CLAIM_SCRIPT, keys.length, ...keys, CLAIM_TTL_SECONDS, ...copies)) as number[];
  return owned.map((o) => o === 1);
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
