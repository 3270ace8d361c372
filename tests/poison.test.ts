// Poison messages: a message that can never be processed ends in the DLQ as REJECTED, once,
// and the rest of its batch goes on.
import { randomUUID } from "node:crypto";

import pg from "pg";
import { afterEach, describe, expect, it } from "vitest";

import { CONTENT_TYPE, encodeMessage, HEADERS, type OrderMessage } from "../common/contract.ts";
import { counterKey } from "../common/keys.ts";
import { decide } from "../consumer/src/decide.ts";
import { createTestEnv, type TestEnv, waitFor } from "./support/env.ts";

let env: TestEnv | undefined;
afterEach(async () => {
  await env?.cleanup();
  env = undefined;
});

function order(product = "Mouse"): OrderMessage {
  return {
    messageId: randomUUID(),
    source: { system: "SYSTEM1", orderId: Math.floor(Math.random() * 1e9) + 1 },
    order: { product, price: "19.90", securityCheck: true },
    requiredAttempts: 1,
    publishedAt: new Date().toISOString(),
  };
}

/** Publishes the messages, in this order, as the gateway does. */
async function publish(e: TestEnv, messages: OrderMessage[]) {
  for (const m of messages)
    await e.broker.publish(e.broker.topology.exchange, e.broker.topology.routingKey, encodeMessage(m), {
      persistent: true,
      contentType: CONTENT_TYPE,
      messageId: m.messageId,
      headers: { [HEADERS.attempt]: 1 },
    });
}

/** The DLQ's messages (left in the queue). */
async function dlqMessages(e: TestEnv) {
  return e.broker.withChannel(async (ch) => {
    const out: { messageId: string; reason: string }[] = [];
    for (;;) {
      const m = await ch.get(e.broker.topology.dlq, { noAck: false });
      if (!m) break;
      out.push({ messageId: String(m.properties.messageId), reason: String(m.properties.headers?.[HEADERS.deadReason]) });
    }
    return out;
  });
}

async function endputIds(e: TestEnv): Promise<string[]> {
  return (await e.endput.endputOrder.findMany()).map((o) => o.messageId).sort();
}

/** The message is in the DLQ once, its history one REJECTED entry with the reason, counted once. */
async function expectRejectedOnce(e: TestEnv, poison: OrderMessage, reason: RegExp) {
  const dead = await dlqMessages(e);
  expect(dead.map((d) => d.messageId)).toEqual([poison.messageId]);
  expect(dead[0]!.reason).toMatch(new RegExp(`^rejected: ${reason.source}`));
  const history = await e.log.history(poison.messageId);
  expect(history.map((h) => [h.status, h.system, h.orderId])).toEqual([["REJECTED", "SYSTEM1", poison.source.orderId]]);
  expect(history[0]!.error).toMatch(reason);
}

describe("poison messages", () => {
  it("dead-letters only the messages the endput refuses; the rest of their batch is written", async () => {
    // A batch wait long enough that the six messages make one batch.
    env = await createTestEnv({ CONSUMER_BATCH_WAIT_MS: "300" });
    const e = env;
    // Values this endput refuses for good: a check constraint (23514) and a column limit (22001).
    const admin = new pg.Client({ connectionString: e.config.databases.endput });
    await admin.connect();
    try {
      await admin.query(`alter table orders add constraint no_poison check (product <> 'Poison')`);
      await admin.query(`alter table orders alter column product type varchar(20)`);
    } finally {
      await admin.end();
    }
    const good = [order(), order(), order(), order()];
    const checked = order("Poison");
    const tooLong = order("A product name longer than twenty characters");
    await publish(e, [good[0]!, checked, good[1]!, good[2]!, tooLong, good[3]!]);
    const c = await e.startConsumer();
    await e.drained(20_000);

    expect(c.consumer.stats().batches).toBe(1);
    expect(await endputIds(e)).toEqual(good.map((g) => g.messageId).sort());
    const dead = await dlqMessages(e);
    expect(dead.map((d) => d.messageId).sort()).toEqual([checked.messageId, tooLong.messageId].sort());
    for (const [m, reason] of [
      [checked, /SQLSTATE 23514.*check constraint "no_poison"/],
      [tooLong, /SQLSTATE 22001.*too long/],
    ] as const) {
      expect(dead.find((d) => d.messageId === m.messageId)!.reason).toMatch(
        new RegExp(`^rejected: endput refused the write \\(${reason.source}`),
      );
      const history = await e.log.history(m.messageId);
      expect(history.map((h) => h.status)).toEqual(["REJECTED"]);
      expect(history[0]!.error).toMatch(reason);
    }
    for (const g of good) expect((await e.log.history(g.messageId)).map((h) => h.status)).toEqual(["SUCCEEDED"]);
    expect(await e.redis.hgetall(counterKey(e.config))).toEqual({ "SYSTEM1:SUCCEEDED": "4", "SYSTEM1:REJECTED": "2" });
  });

  it("keeps consuming when a message's AMQP message id or copy id holds a NUL character", async () => {
    env = await createTestEnv({ CONSUMER_BATCH_WAIT_MS: "300" });
    const e = env;
    const copied = order();
    const good = order();
    // The log on FerretDB (PostgreSQL jsonb) refuses a NUL anywhere in a document, and fails the
    // whole insert when one document holds one.
    await e.broker.withChannel(async (ch) => {
      const send = (body: Buffer, messageId: string, copyId?: string) =>
        ch.sendToQueue(e.broker.topology.primary, body, {
          persistent: true,
          contentType: CONTENT_TYPE,
          messageId,
          headers: { [HEADERS.attempt]: 1, ...(copyId ? { [HEADERS.copyId]: copyId } : {}) },
        });
      send(Buffer.from("not json"), "unreadable\u0000id");
      send(encodeMessage(copied), copied.messageId, "copy\u0000id");
      send(encodeMessage(good), good.messageId, "copy-good");
      await ch.checkQueue(e.broker.topology.primary);
    });
    await e.startConsumer();
    await e.drained(20_000);

    expect(await endputIds(e)).toEqual([copied.messageId, good.messageId].sort());
    const dead = await dlqMessages(e);
    expect(dead.map((d) => d.reason)).toEqual(["rejected: body is not valid JSON"]);
    const rejected = await e.log.collection.find({ status: "REJECTED" }).toArray();
    expect(rejected).toHaveLength(1);
    expect(rejected[0]!.messageId).not.toContain("\u0000");
    expect(await e.log.collection.countDocuments({ status: "SUCCEEDED" })).toBe(2);
  });

  it("rejects a message whose processing throws, after the redelivery bound, and acks the rest of its batch", async () => {
    env = await createTestEnv({ CONSUMER_BATCH_WAIT_MS: "300" });
    const e = env;
    const seen = new Map<string, number>();
    const throwing: typeof decide = (content, headers, opts) => {
      const m = JSON.parse(content.toString()) as OrderMessage;
      seen.set(m.messageId, (seen.get(m.messageId) ?? 0) + 1);
      if (m.order.product === "Boom") throw new TypeError("processing blew up");
      return decide(content, headers, opts);
    };
    const good = [order(), order(), order()];
    const boom = order("Boom");
    await publish(e, [good[0]!, boom, good[1]!, good[2]!]);
    await e.startConsumer({}, undefined, { decide: throwing });
    await e.drained(20_000);

    expect(await endputIds(e)).toEqual(good.map((g) => g.messageId).sort());
    // The others were processed once: their batch was acked, not redelivered with the poison.
    for (const g of good) expect(seen.get(g.messageId)).toBe(1);
    // One delivery, then CONSUMER_MAX_REDELIVERIES (10) more that fail; the next is rejected.
    expect(seen.get(boom.messageId)).toBe(11);
    await expectRejectedOnce(e, boom, /redelivered 11 times, more than the 10 allowed/);
    expect(await e.redis.hgetall(counterKey(e.config))).toEqual({ "SYSTEM1:SUCCEEDED": "3", "SYSTEM1:REJECTED": "1" });
  });

  it("rejects a copy the quorum queue delivered more often than the bound", async () => {
    env = await createTestEnv({ AMQP_QUEUE_TYPE: "quorum" });
    const e = env;
    const { primary } = e.broker.topology;
    const poison = order();
    await publish(e, [poison]);
    // Returned unacked 11 times, as to consumers that crash on it; the queue counts them.
    await e.broker.withChannel(async (ch) => {
      for (let i = 0; i < 11; i++) {
        const m = await waitFor(
          () => ch.get(primary, { noAck: false }),
          (got) => got !== false,
          3000,
        );
        if (m) ch.nack(m, false, true);
      }
      await ch.checkQueue(primary);
    });
    const good = order();
    await publish(e, [good]);
    await e.startConsumer();
    await e.drained(20_000);

    expect(await endputIds(e)).toEqual([good.messageId]);
    await expectRejectedOnce(e, poison, /redelivered 11 times, more than the 10 allowed/);
    expect(await e.redis.hgetall(counterKey(e.config))).toEqual({ "SYSTEM1:SUCCEEDED": "1", "SYSTEM1:REJECTED": "1" });
  });
});
