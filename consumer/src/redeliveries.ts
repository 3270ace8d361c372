// How often a copy came back: the bound on redeliveries turns a message that can never be
// processed (it fails its consumer every time, or crashes it) into a REJECTED dead letter instead
// of an endless loop that holds every batch behind it.
//
// Only what points at the copy counts: a processing failure, and a redelivery to a process that
// had not seen the copy redelivered yet (its predecessor died with it). A broker restart or a lost
// channel returns every unacked copy to the same process, which does not count it again, so
// innocent copies do not reach the bound because the broker went away several times.
import type { ConsumeMessage } from "amqplib";
import type { Redis } from "ioredis";

import type { Config } from "../../common/config.ts";
import { redeliveriesKey } from "../../common/keys.ts";

/** As long as a copy can plausibly keep coming back (a batch held through a day's outage). */
const REDELIVERIES_TTL_SECONDS = 24 * 3600;
/** Copies this process remembers having counted; the oldest are forgotten first. */
const SEEN_LIMIT = 100_000;

export interface RedeliveryCounter {
  /** Per delivery, how often its copy was delivered before (and failed or died with its consumer). */
  count(deliveries: { msg: ConsumeMessage; copy: string }[]): Promise<number[]>;
  /** Counts a failure of each of these copies now; their coming back to this process is not counted again. */
  failed(copies: string[]): Promise<void>;
}

/** The broker's count of earlier deliveries of a message, where the queue keeps one (quorum). */
function brokerCount(msg: ConsumeMessage): number {
  const n = msg.properties.headers?.["x-delivery-count"];
  return typeof n === "number" && Number.isSafeInteger(n) && n > 0 ? n : 0;
}

export function createRedeliveryCounter(redis: Redis, config: Config): RedeliveryCounter {
  const seen = new Set<string>();
  const remember = (copy: string) => {
    seen.delete(copy);
    seen.add(copy);
    if (seen.size > SEEN_LIMIT) seen.delete(seen.values().next().value!);
  };

  /** Per copy, INCR (add) or GET the count, in one round trip; returns the counts. */
  async function run(ops: { copy: string; add: boolean }[]): Promise<number[]> {
    if (ops.length === 0) return [];
    const p = redis.pipeline();
    for (const { copy, add } of ops) {
      const key = redeliveriesKey(config, copy);
      if (add) p.incr(key).expire(key, REDELIVERIES_TTL_SECONDS);
      else p.get(key).expire(key, REDELIVERIES_TTL_SECONDS);
    }
    const results = (await p.exec()) ?? [];
    const failed = results.find(([err]) => err);
    if (failed) throw failed[0];
    for (const { copy } of ops) remember(copy);
    return ops.map((_, i) => Number(results[2 * i]![1] ?? 0));
  }

  return {
    async count(deliveries) {
      const back = deliveries.filter((d) => d.msg.fields.redelivered);
      const ours = await run(back.map(({ copy }) => ({ copy, add: !seen.has(copy) })));
      const byDelivery = new Map(back.map((d, i) => [d, ours[i]!]));
      return deliveries.map((d) => Math.max(brokerCount(d.msg), byDelivery.get(d) ?? 0));
    },
    async failed(copies) {
      await run(copies.map((copy) => ({ copy, add: true })));
    },
  };
}
