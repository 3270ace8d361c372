// Processing events and their counters, written to Redis by common/events.ts: once-only for the
// consumer's attempts, with the caller's pipeline for a redrive's or a discard's.
import { randomUUID } from "node:crypto";

import { afterAll, describe, expect, it } from "vitest";

import { readConfigWith } from "../common/config.ts";
import { deadLetterGroupKey, deadLetterGroupsKey } from "../common/dead-letter-groups.ts";
import { countEventsOnce, eventsTopic, type ProcessingEvent, recordEvent } from "../common/events.ts";
import { counterKey } from "../common/keys.ts";
import { createRedis } from "../common/stores.ts";
import { waitFor } from "./support/env.ts";

const config = readConfigWith({ REDIS_PREFIX: `test-${randomUUID().slice(0, 8)}` });
const redis = createRedis(config, "test-events");
const sub = createRedis(config, "test-events-sub");
const received: ProcessingEvent[] = [];
sub.on("message", (_channel, raw: string) => received.push(JSON.parse(raw) as ProcessingEvent));
await sub.subscribe(eventsTopic(config));
afterAll(async () => {
  const keys = await redis.keys(`${config.redis.prefix}:*`);
  if (keys.length > 0) await redis.del(...keys);
  await Promise.all([redis.quit(), sub.quit()]);
});

function event(status: ProcessingEvent["status"], system: ProcessingEvent["system"]): ProcessingEvent {
  return {
    messageId: randomUUID(),
    system,
    orderId: system ? 7 : null,
    attempt: 1,
    round: 0,
    status,
    at: new Date().toISOString(),
  };
}

describe("processing events", () => {
  it("writes an event and its counter's increment with the caller's transaction", async () => {
    const redriven = event("REDRIVEN", "SYSTEM1");
    const discarded = event("DISCARDED", null);
    const multi = redis.multi();
    recordEvent(multi, config, redriven);
    recordEvent(multi, config, discarded);
    // Queued, not written, until the caller executes its transaction.
    expect(await redis.hgetall(counterKey(config))).toEqual({});
    await multi.exec();
    expect(await redis.hgetall(counterKey(config))).toMatchObject({ "SYSTEM1:REDRIVEN": "1", "UNKNOWN:DISCARDED": "1" });
    await waitFor(
      async () => received.map((e) => e.messageId),
      (ids) => ids.includes(discarded.messageId),
    );
    expect(received.filter((e) => e.messageId === redriven.messageId)).toEqual([redriven]);
  });

  it("counts and announces each attempt once however often its batch counts it", async () => {
    const succeeded = event("SUCCEEDED", "SYSTEM2");
    const dead = event("DEAD_LETTERED", "SYSTEM2");
    const groupKey = deadLetterGroupKey(config, "SYSTEM2", "max-attempts");
    const deadAt = new Date();
    const attempts = [
      { event: succeeded },
      { event: dead, dead: { groupKey, group: "SYSTEM2:max-attempts", messageId: dead.messageId, deadAt } },
    ];
    expect(await countEventsOnce(redis, config, attempts)).toBe(2);
    expect(await countEventsOnce(redis, config, attempts)).toBe(0);
    const counters = await redis.hgetall(counterKey(config));
    expect(counters["SYSTEM2:SUCCEEDED"]).toBe("1");
    expect(counters["SYSTEM2:DEAD_LETTERED"]).toBe("1");
    expect(await redis.zscore(groupKey, dead.messageId)).toBe(String(deadAt.getTime()));
    expect(await redis.smembers(deadLetterGroupsKey(config))).toContain("SYSTEM2:max-attempts");
    // A later attempt of the same message is another attempt: counted.
    expect(await countEventsOnce(redis, config, [{ event: { ...succeeded, attempt: 2 } }])).toBe(1);
    await waitFor(
      async () => received.filter((e) => e.messageId === succeeded.messageId).length,
      (n) => n >= 2,
    );
    // Let any duplicate publish arrive before counting what was announced.
    await new Promise((r) => setTimeout(r, 200));
    expect(received.filter((e) => e.messageId === succeeded.messageId).map((e) => e.attempt)).toEqual([1, 2]);
    expect(received.filter((e) => e.messageId === dead.messageId)).toEqual([dead]);
  });
});
