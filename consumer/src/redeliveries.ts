// How often a copy came back: the bound on redeliveries turns a message that can never be
// processed (it crashes its consumer, or fails it every time) into a REJECTED dead letter instead
// of an endless loop that holds every batch behind it.
import type { ConsumeMessage } from "amqplib";
import type { Redis } from "ioredis";

import type { Config } from "../../common/config.ts";
import { redeliveriesKey } from "../../common/keys.ts";

/** As long as a copy can plausibly keep coming back (a batch held through a day's outage). */
const REDELIVERIES_TTL_SECONDS = 24 * 3600;

/** The broker's count of earlier deliveries of a message, where the queue keeps one (quorum). */
function brokerCount(msg: ConsumeMessage): number {
  const n = msg.properties.headers?.["x-delivery-count"];
  return typeof n === "number" && Number.isSafeInteger(n) && n > 0 ? n : 0;
}

/**
 * Per delivery, how often its copy was delivered before: the larger of the broker's count and
 * our own, a Redis counter per copy taken on every redelivery (a classic queue counts nothing).
 */
export async function countRedeliveries(
  redis: Redis,
  config: Config,
  deliveries: { msg: ConsumeMessage; copy: string }[],
): Promise<number[]> {
  const counted = deliveries.filter((d) => d.msg.fields.redelivered);
  const ours = new Map<(typeof deliveries)[number], number>();
  if (counted.length > 0) {
    const p = redis.pipeline();
    for (const d of counted)
      p.incr(redeliveriesKey(config, d.copy)).expire(redeliveriesKey(config, d.copy), REDELIVERIES_TTL_SECONDS);
    const results = (await p.exec()) ?? [];
    const failed = results.find(([err]) => err);
    if (failed) throw failed[0];
    counted.forEach((d, i) => ours.set(d, Number(results[2 * i]![1])));
  }
  return deliveries.map((d) => Math.max(brokerCount(d.msg), ours.get(d) ?? 0));
}
