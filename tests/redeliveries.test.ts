// Counting a copy's redeliveries in Redis: what points at the copy counts, a broker's return of
// everything a live process held does not.
import { randomUUID } from "node:crypto";

import type { ConsumeMessage } from "amqplib";
import { afterAll, describe, expect, it } from "vitest";

import { readConfigWith } from "../common/config.ts";
import { createRedis } from "../common/stores.ts";
import { createRedeliveryCounter } from "../consumer/src/redeliveries.ts";

const config = readConfigWith({ REDIS_PREFIX: `test-${randomUUID().slice(0, 8)}` });
const redis = createRedis(config, "test-redeliveries");
afterAll(async () => {
  const keys = await redis.keys(`${config.redis.prefix}:*`);
  if (keys.length > 0) await redis.del(...keys);
  await redis.quit();
});

/** A delivery as amqplib hands it over, with only what the counter reads. */
const delivery = (redelivered: boolean, headers: Record<string, unknown> = {}) =>
  ({ fields: { redelivered }, properties: { headers } }) as unknown as ConsumeMessage;

describe("redelivery counter", () => {
  it("counts a copy once per process it comes back to, and once per failure", async () => {
    const copy = randomUUID();
    const first = createRedeliveryCounter(redis, config);
    expect(await first.count([{ msg: delivery(false), copy }])).toEqual([0]);
    // Returned to the same process (its channel was lost, the broker restarted): counted once.
    expect(await first.count([{ msg: delivery(true), copy }])).toEqual([1]);
    expect(await first.count([{ msg: delivery(true), copy }])).toEqual([1]);
    // Processing it failed here: that counts, and its return does not count again.
    await first.failed([copy]);
    expect(await first.count([{ msg: delivery(true), copy }])).toEqual([2]);
    // A new process (the last one died with it) counts it again.
    const second = createRedeliveryCounter(redis, config);
    expect(await second.count([{ msg: delivery(true), copy }])).toEqual([3]);
  });

  it("takes the queue's own count where it is larger", async () => {
    const counter = createRedeliveryCounter(redis, config);
    const copy = randomUUID();
    expect(await counter.count([{ msg: delivery(true, { "x-delivery-count": 7 }), copy }])).toEqual([7]);
    expect(await counter.count([{ msg: delivery(false, { "x-delivery-count": "7" }), copy: randomUUID() }])).toEqual([0]);
  });
});
