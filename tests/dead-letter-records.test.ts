// What the gateway writes and emits for a dead letter it redrives or discards, unit by unit:
// the log entries it maps a dead letter to, and the event and counter it sends to Redis.
import { randomUUID } from "node:crypto";

import { Redis } from "ioredis";
import { afterEach, describe, expect, it } from "vitest";

import { readConfigWith } from "../common/config.ts";
import { eventsTopic, type ProcessingEvent } from "../common/events.ts";
import { counterKey } from "../common/keys.ts";
import { emitProcessingEvent } from "../gateway/src/services/dead-letter-events.ts";
import { discardedEntry, redrivenEntry } from "../gateway/src/services/dead-letter-records.ts";
import type { DeadLetter } from "../gateway/src/services/dead-letter-walk.ts";

const clients: Redis[] = [];
const keys: { redis: Redis; key: string }[] = [];
afterEach(async () => {
  for (const { redis, key } of keys.splice(0)) await redis.del(key);
  for (const c of clients.splice(0)) c.disconnect();
});

const letter = (over: Partial<DeadLetter> = {}): DeadLetter => ({
  messageId: "m-1",
  system: "SYSTEM1",
  orderId: 7,
  reason: "endput refused the row",
  group: "endput refused the row",
  attempts: 3,
  round: 2,
  deadAt: null,
  ...over,
});

describe("dead-letter log entries", () => {
  const now = new Date("2026-01-02T03:04:05Z");
  const at = { now, expiresAt: new Date("2026-01-09T03:04:05Z"), maxAttempts: 5 };

  it("opens the next round with a REDRIVEN entry that carries the trace and why the round before ended", () => {
    const doc = redrivenEntry(letter(), 3, at, "trace-1");
    expect(doc).toMatchObject({ messageId: "m-1", round: 3, attempt: 0, status: "REDRIVEN", system: "SYSTEM1", orderId: 7 });
    expect(doc.error).toBe("redriven after 3 attempts (endput refused the row)");
    expect(doc.traceId).toBe("trace-1");
    expect(doc.expiresAt).toEqual(at.expiresAt);
    expect("traceId" in redrivenEntry(letter(), 3, at)).toBe(false);
  });

  it("closes a rejected message's round under no system, as the consumer counted it", () => {
    const doc = discardedEntry(letter({ group: "rejected:other", system: "SYSTEM2", orderId: 9 }), at);
    expect(doc).toMatchObject({ round: 2, attempt: 0, status: "DISCARDED", system: null, orderId: null });
    expect(doc.source).toEqual({ system: null, orderId: null, publishedAt: null });
    expect(discardedEntry(letter(), at)).toMatchObject({ system: "SYSTEM1", orderId: 7 });
  });
});

describe("emitProcessingEvent", () => {
  it("publishes the event on the events topic and counts its outcome under its system", async () => {
    const config = readConfigWith({ REDIS_PREFIX: `test-${randomUUID()}` });
    const redis = new Redis(config.redis.url);
    const subscriber = new Redis(config.redis.url);
    clients.push(redis, subscriber);
    keys.push({ redis, key: counterKey(config) });
    const received: ProcessingEvent[] = [];
    subscriber.on("message", (_channel: string, text: string) => received.push(JSON.parse(text) as ProcessingEvent));
    await subscriber.subscribe(eventsTopic(config));

    const event: ProcessingEvent = {
      messageId: "m-1",
      system: null,
      orderId: null,
      attempt: 0,
      round: 1,
      status: "DISCARDED",
      at: new Date().toISOString(),
    };
    await emitProcessingEvent(redis, config, event);
    await emitProcessingEvent(redis, config, { ...event, system: "SYSTEM1", status: "REDRIVEN" });

    await expect.poll(() => received.length).toBe(2);
    expect(received[0]).toEqual(event);
    expect(await redis.hgetall(counterKey(config))).toEqual({ "UNKNOWN:DISCARDED": "1", "SYSTEM1:REDRIVEN": "1" });
  });
});
