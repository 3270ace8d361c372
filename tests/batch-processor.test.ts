// The batch processor against the real stores: one batch's claims, endput rows, counters and
// events, what it forwards, and what a redelivery or another copy of the same attempts does.
import { randomUUID } from "node:crypto";

import type { ConsumeMessage } from "amqplib";
import { type Document, MongoClient } from "mongodb";
import { afterEach, describe, expect, it } from "vitest";

import { createAttemptLog } from "../common/attempt-log.ts";
import { HEADERS, type OrderMessage } from "../common/contract.ts";
import { counterKey } from "../common/keys.ts";
import { createBatchProcessor } from "../consumer/src/batch-processor.ts";
import { createRedeliveryCounter } from "../consumer/src/redeliveries.ts";
import { ChannelGone } from "../consumer/src/store-retry.ts";
import { createTestEnv, type TestEnv } from "./support/env.ts";
import { logEntry } from "./support/log-entry.ts";

let env: TestEnv | undefined;
afterEach(async () => {
  await env?.cleanup();
  env = undefined;
});

function order(requiredAttempts: number): OrderMessage {
  return {
    messageId: randomUUID(),
    source: { system: "SYSTEM1", orderId: Math.floor(Math.random() * 1e9) + 1 },
    order: { product: "Lamp", price: "9.99", securityCheck: requiredAttempts <= 2 },
    requiredAttempts,
    publishedAt: new Date().toISOString(),
  };
}

/** A delivery of attempt `attempt` of `m`, as the copy `copy`. */
function delivery(m: OrderMessage, attempt: number, copy: string, redelivered = false): ConsumeMessage {
  return {
    content: Buffer.from(JSON.stringify(m)),
    fields: { redelivered },
    properties: { messageId: m.messageId, headers: { [HEADERS.attempt]: attempt, [HEADERS.copyId]: copy } },
  } as unknown as ConsumeMessage;
}

function processorOf(e: TestEnv) {
  const { config, logger, endputPool: endput, log, redis } = e;
  return createBatchProcessor({ config, logger, endput, log, redis, redeliveries: createRedeliveryCounter(redis, config) });
}

describe("batch processor", () => {
  it("makes a batch's side effects durable once and forwards only its failures, also when redelivered", async () => {
    const e = (env = await createTestEnv({ MAX_ATTEMPTS: "3" }));
    const [ok, retry, dead] = [order(1), order(3), order(5)];
    const batch = [delivery(ok, 1, "c-ok"), delivery(retry, 1, "c-retry"), delivery(dead, 3, "c-dead")];
    const processor = processorOf(e);

    const first = await processor.process(batch, () => true);
    expect(first.forwards.map((f) => [f.messageId, f.outcome.kind])).toEqual([
      [retry.messageId, "RETRY_SCHEDULED"],
      [dead.messageId, "DEAD_LETTERED"],
    ]);
    expect(first.requeue).toEqual([]);
    expect((await e.endput.endputOrder.findMany()).map((o) => o.messageId)).toEqual([ok.messageId]);
    const docs = await e.log.collection
      .find({}, { projection: { _id: 0, messageId: 1, status: 1, copyId: 1, retained: 1 } })
      .toArray();
    expect(docs).toHaveLength(3);
    expect(docs.find((d) => d.messageId === dead.messageId)).toMatchObject({
      status: "DEAD_LETTERED",
      copyId: "c-dead",
      retained: true,
    });
    const counters = { "SYSTEM1:SUCCEEDED": "1", "SYSTEM1:RETRY_SCHEDULED": "1", "SYSTEM1:DEAD_LETTERED": "1" };
    expect(await e.redis.hgetall(counterKey(e.config))).toEqual(counters);

    // Its redelivery (the ack was lost): the same copies own their claims and forward again; nothing counts twice.
    const again = await processor.process(
      batch.map((m) => ({ ...m, fields: { redelivered: true } }) as ConsumeMessage),
      () => true,
    );
    expect(again.forwards.map((f) => f.messageId)).toEqual([retry.messageId, dead.messageId]);
    expect(await e.redis.hgetall(counterKey(e.config))).toEqual(counters);
    expect(await e.endput.endputOrder.count()).toBe(1);
    expect(await e.log.collection.countDocuments()).toBe(3);
  });

  it("treats another copy of an attempt as a duplicate: nothing forwarded or counted", async () => {
    const e = (env = await createTestEnv());
    const m = order(3);
    const processor = processorOf(e);
    expect((await processor.process([delivery(m, 1, "first")], () => true)).forwards).toHaveLength(1);
    // A publisher's retry of the same attempt, and in one batch a second copy behind the owner's.
    const other = await processor.process([delivery(m, 1, "second"), delivery(m, 1, "first")], () => true);
    expect(other.forwards.map((f) => f.copy)).toEqual(["first"]);
    expect(await e.redis.hgetall(counterKey(e.config))).toEqual({ "SYSTEM1:RETRY_SCHEDULED": "1" });
    expect(await e.log.collection.countDocuments()).toBe(1);
  });

  it("writes each success's endput row with the values its message carries", async () => {
    const e = (env = await createTestEnv());
    const plain = order(1);
    const quoted = order(1);
    quoted.source.system = "SYSTEM2";
    quoted.order = { product: 'Lamp "Deluxe", 50% \\ {a,b} \u2603\u{1F4A1}', price: "9999999999.99", securityCheck: true };
    await processorOf(e).process([delivery(plain, 1, "p"), delivery(quoted, 2, "q")], () => true);
    const rows = await e.endput.endputOrder.findMany({ orderBy: { sourceSystem: "asc" } });
    expect(
      rows.map((r) => [r.sourceSystem, r.sourceOrderId, r.messageId, r.product, r.price.toFixed(2), r.securityCheck, r.attempts]),
    ).toEqual([
      ["SYSTEM1", plain.source.orderId, plain.messageId, "Lamp", "9.99", true, 1],
      ["SYSTEM2", quoted.source.orderId, quoted.messageId, quoted.order.product, "9999999999.99", true, 2],
    ]);
  });

  it("stops before writing anything once its channel is gone", async () => {
    const e = (env = await createTestEnv());
    const processor = processorOf(e);
    await expect(processor.process([delivery(order(1), 1, "c")], () => false)).rejects.toBeInstanceOf(ChannelGone);
    expect(await e.endput.endputOrder.count()).toBe(0);
    expect(await e.log.collection.countDocuments()).toBe(0);
    expect(await e.redis.hgetall(counterKey(e.config))).toEqual({});
  });
});

describe("attempt log claims", () => {
  const entry = (messageId: string, copyId: string, error: string | null) =>
    logEntry({ messageId, status: error ? "RETRY_SCHEDULED" : "SUCCEEDED", requiredAttempts: 2, error, copyId });

  it("claims a batch larger than one insert command holds, each owner at its own index", async () => {
    const e = (env = await createTestEnv());
    // Six errors of 3 MB: 18 MB of BSON, more than one command may carry.
    const error = "e".repeat(3 * 1024 * 1024);
    const ids = Array.from({ length: 6 }, () => randomUUID());
    // The last attempt was claimed before by another copy.
    await e.log.claim([entry(ids[5]!, "earlier", error)]);
    const owners = await e.log.claim(ids.map((id) => entry(id, "this", error)));
    expect(owners).toEqual(["this", "this", "this", "this", "this", "earlier"]);
    const stored = await e.log.collection.find({}, { projection: { messageId: 1, copyId: 1 } }).toArray();
    expect(new Map(stored.map((d) => [d.messageId, d.copyId]))).toEqual(
      new Map(ids.map((id, i) => [id, i === 5 ? "earlier" : "this"])),
    );
  });

  it("sends the connection string's write concern with its inserts", async () => {
    const e = (env = await createTestEnv());
    const url = new URL(e.config.mongo.url);
    url.searchParams.set("w", "majority");
    const client = new MongoClient(url.toString(), { monitorCommands: true });
    try {
      const sent: Document[] = [];
      client.on("commandStarted", (ev) => {
        if (ev.commandName === "insert") sent.push(ev.command);
      });
      const log = createAttemptLog({ db: client.db(e.config.mongo.database), config: e.config, logger: e.logger });
      expect(await log.claim([entry(randomUUID(), "c", null)])).toEqual(["c"]);
      expect(await log.insert([entry(randomUUID(), "c", null)])).toBe(1);
      expect(sent.map((c) => c.writeConcern)).toEqual([{ w: "majority" }, { w: "majority" }]);
    } finally {
      await client.close();
    }
  });
});
