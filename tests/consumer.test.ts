// The consumer against the real RabbitMQ, PostgreSQL, Redis and Mongo-compatible server.
import { randomUUID } from "node:crypto";

import { MongoClient } from "mongodb";
import pg from "pg";
import { afterEach, describe, expect, it } from "vitest";

import { createAttemptLog, type LogDocument } from "../common/attempt-log.ts";
import { CONTENT_TYPE, encodeMessage, HEADERS, type OrderMessage } from "../common/contract.ts";
import { eventsTopic, type ProcessingEvent } from "../common/events.ts";
import { counterKey, forwardedKey } from "../common/keys.ts";
import { createRedis } from "../common/stores.ts";
import { deliveryLogFields } from "../consumer/src/records.ts";
import { graphql } from "../gateway/client/graphql.ts";
import { createTestEnv, type RunningConsumer, type TestEnv, waitFor } from "./support/env.ts";
import { logEntry } from "./support/log-entry.ts";
import { probeLogServer } from "./support/server-kind.ts";
import { gqlOn } from "./typed-gql.ts";

const logServer = await probeLogServer();

let env: TestEnv | undefined;
afterEach(async () => {
  await env?.cleanup();
  env = undefined;
});

const SEED = graphql(`
  mutation ($system: System!, $count: Int!) {
    seedOrders(system: $system, count: $count) {
      inserted
      securityCheckTrue
    }
  }
`);
const PUBLISH = graphql(`
  mutation ($system: System!) {
    publishPending(system: $system) {
      published
    }
  }
`);

/** The management API of the broker scripts/services.sh runs for the tests (guest on port 15672). */
function management(e: TestEnv, path: string, init: RequestInit = {}): Promise<Response> {
  const origin = `http://${new URL(e.config.broker.url).hostname}:15672`;
  const authorization = `Basic ${Buffer.from("guest:guest").toString("base64")}`;
  return fetch(`${origin}${path}`, { ...init, headers: { ...(init.headers as Record<string, string>), authorization } });
}

function order(overrides: Partial<OrderMessage> = {}): OrderMessage {
  return {
    messageId: randomUUID(),
    source: { system: "SYSTEM1", orderId: Math.floor(Math.random() * 1e9) + 1 },
    order: { product: "Mouse", price: "19.90", securityCheck: true },
    requiredAttempts: 1,
    publishedAt: new Date().toISOString(),
    ...overrides,
  };
}

async function publishRaw(e: TestEnv, body: Buffer, headers: Record<string, unknown>, messageId?: string) {
  await e.broker.publish(e.broker.topology.exchange, e.broker.topology.routingKey, body, {
    persistent: true,
    contentType: CONTENT_TYPE,
    headers,
    ...(messageId ? { messageId } : {}),
  });
}

/** Collects every processing event published on the Redis channel from now on. */
async function subscribeEvents(e: TestEnv) {
  const sub = createRedis(e.config, "test-events");
  const events: ProcessingEvent[] = [];
  await sub.subscribe(eventsTopic(e.config));
  sub.on("message", (_channel, raw: string) => events.push(JSON.parse(raw) as ProcessingEvent));
  return { sub, events };
}

async function dlqMessages(e: TestEnv) {
  return e.broker.withChannel(async (ch) => {
    const out: { body: Buffer; headers: Record<string, unknown> }[] = [];
    for (;;) {
      const m = await ch.get(e.broker.topology.dlq, { noAck: false });
      if (!m) break;
      out.push({ body: m.content, headers: m.properties.headers ?? {} });
    }
    // Leave them in the queue: closing the channel requeues the unacked gets.
    return out;
  });
}

/** Attempt 1 was retried once and attempt 2 succeeded, with one endput row. */
async function expectOneRetryThenSuccess(e: TestEnv, msg: OrderMessage) {
  const history = await e.log.history(msg.messageId);
  expect(history.map((h) => [h.attempt, h.status])).toEqual([
    [1, "RETRY_SCHEDULED"],
    [2, "SUCCEEDED"],
  ]);
  expect(await e.endput.endputOrder.count()).toBe(1);
}

describe("end to end", () => {
  it("retries, dead-letters and sinks exactly the security_check = true orders", async () => {
    env = await createTestEnv({ RETRY_DELAY_MS: "300", MAX_ATTEMPTS: "5" });
    const e = env;
    await e.startConsumer();
    await Promise.all([gqlOn(e, SEED, { system: "SYSTEM1", count: 300 }), gqlOn(e, SEED, { system: "SYSTEM2", count: 200 })]);
    const [p1, p2] = await Promise.all([gqlOn(e, PUBLISH, { system: "SYSTEM1" }), gqlOn(e, PUBLISH, { system: "SYSTEM2" })]);
    expect(p1.data).toEqual({ publishPending: { published: 300 } });
    expect(p2.data).toEqual({ publishPending: { published: 200 } });
    await e.drained(120_000);

    // The sink holds exactly the true orders, each once.
    const trueOrders = [
      ...(await e.sources.SYSTEM1.order.findMany({ where: { securityCheck: true } })).map((o) => `SYSTEM1:${o.id}`),
      ...(await e.sources.SYSTEM2.order.findMany({ where: { securityCheck: true } })).map((o) => `SYSTEM2:${o.id}`),
    ].sort();
    const sunk = (await e.endput.endputOrder.findMany()).map((o) => `${o.sourceSystem}:${o.sourceOrderId}`).sort();
    expect(sunk).toEqual(trueOrders);

    // Every false order is in the DLQ exactly once, after MAX_ATTEMPTS attempts.
    const dead = await dlqMessages(e);
    const falseOrders = [
      ...(await e.sources.SYSTEM1.order.findMany({ where: { securityCheck: false } })).map((o) => `SYSTEM1:${o.id}`),
      ...(await e.sources.SYSTEM2.order.findMany({ where: { securityCheck: false } })).map((o) => `SYSTEM2:${o.id}`),
    ].sort();
    const deadKeys = dead.map((d) => {
      const m = JSON.parse(d.body.toString()) as OrderMessage;
      expect(d.headers[HEADERS.deadReason]).toBe("max-attempts");
      expect(d.headers[HEADERS.deadAttempts]).toBe(5);
      return `${m.source.system}:${m.source.orderId}`;
    });
    expect(deadKeys.sort()).toEqual(falseOrders);

    // The log: k attempts for a message that needed k, MAX_ATTEMPTS ending in DEAD_LETTERED for false ones.
    const docs = await e.log.collection.find({}).toArray();
    const byMessage = new Map<string, LogDocument[]>();
    for (const d of docs) byMessage.set(d.messageId, [...(byMessage.get(d.messageId) ?? []), d]);
    expect(byMessage.size).toBe(500);
    for (const history of byMessage.values()) {
      history.sort((a, b) => a.attempt - b.attempt);
      const required = history[0]!.requiredAttempts!;
      const attempts = history.map((h) => h.attempt);
      if (history[0]!.order!.securityCheck) {
        expect(attempts).toEqual(Array.from({ length: required }, (_, i) => i + 1));
        expect(history.map((h) => h.status)).toEqual([...Array(required - 1).fill("RETRY_SCHEDULED"), "SUCCEEDED"]);
        // Only a dead letter's history is kept past its expiry: a retried message's is not.
        expect(history.every((h) => !h.retained && h.expiresAt !== null)).toBe(true);
      } else {
        expect(required).toBe(6);
        expect(attempts).toEqual([1, 2, 3, 4, 5]);
        expect(history.at(-1)!.status).toBe("DEAD_LETTERED");
        expect(history.at(-1)!.retained).toBe(true);
      }
      // Retries wait at least RETRY_DELAY_MS between attempts.
      for (let i = 1; i < history.length; i++) {
        expect(history[i]!.processedAt.getTime() - history[i - 1]!.processedAt.getTime()).toBeGreaterThanOrEqual(300 - 5);
      }
    }
    const endputAttempts = await e.endput.endputOrder.findMany({ select: { attempts: true, messageId: true } });
    for (const row of endputAttempts) expect(row.attempts).toBe(byMessage.get(row.messageId)!.length);
  });
});

describe("processing", () => {
  it("sends malformed messages to the DLQ as REJECTED and keeps consuming", async () => {
    env = await createTestEnv();
    const e = env;
    await e.startConsumer();
    const good = order();
    await publishRaw(e, Buffer.from("not json"), { [HEADERS.attempt]: 1 }, randomUUID());
    await publishRaw(e, Buffer.from(JSON.stringify({ ...good, requiredAttempts: "x" })), { [HEADERS.attempt]: 1 });
    await publishRaw(e, encodeMessage(order()), {});
    await publishRaw(e, Buffer.alloc(200_000, 120), { [HEADERS.attempt]: 1 });
    await publishRaw(e, encodeMessage(good), { [HEADERS.attempt]: 1 }, good.messageId);
    await e.drained();

    const dead = await dlqMessages(e);
    expect(dead).toHaveLength(4);
    const reasons = dead.map((d) => String(d.headers[HEADERS.deadReason]));
    expect(reasons.every((r) => r.startsWith("rejected: "))).toBe(true);
    expect(reasons.some((r) => /not valid JSON/.test(r))).toBe(true);
    expect(reasons.some((r) => /missing header x-attempt/.test(r))).toBe(true);
    expect(reasons.some((r) => /exceeds the 65536-byte maximum/.test(r))).toBe(true);
    expect(reasons.some((r) => /requiredAttempts/.test(r))).toBe(true);
    const rejected = await e.log.collection.find({ status: "REJECTED" }).toArray();
    expect(rejected).toHaveLength(4);
    for (const r of rejected) expect(r.error).toBeTruthy();
    expect(await e.endput.endputOrder.count()).toBe(1);
  });

  it("dead-letters a message the stores cannot hold and keeps consuming", async () => {
    env = await createTestEnv();
    const e = env;
    await e.startConsumer();
    // PostgreSQL refuses a NUL character in text and in jsonb (the FerretDB log), whatever the retries.
    const poison = order({ order: { product: "Mo\u0000use", price: "19.90", securityCheck: true } });
    const good = order();
    await publishRaw(e, Buffer.from(JSON.stringify(poison)), { [HEADERS.attempt]: 1 }, poison.messageId);
    await publishRaw(e, encodeMessage(good), { [HEADERS.attempt]: 1 }, good.messageId);
    await e.drained(20_000);
    expect((await e.endput.endputOrder.findMany()).map((o) => o.messageId)).toEqual([good.messageId]);
    const dead = await dlqMessages(e);
    expect(dead).toHaveLength(1);
    expect(String(dead[0]!.headers[HEADERS.deadReason])).toMatch(/^rejected: .*NUL/);
    expect((await e.log.history(poison.messageId)).map((h) => h.status)).toEqual(["REJECTED"]);
  });

  it("writes one endput row when the same message is delivered twice", async () => {
    env = await createTestEnv();
    const e = env;
    const msg = order();
    await publishRaw(e, encodeMessage(msg), { [HEADERS.attempt]: 1 }, msg.messageId);
    await publishRaw(e, encodeMessage(msg), { [HEADERS.attempt]: 1 }, msg.messageId);
    await e.startConsumer();
    await e.drained();
    expect(await e.endput.endputOrder.count()).toBe(1);
    expect(await e.log.collection.countDocuments({ messageId: msg.messageId })).toBe(1);
  });

  it("does not schedule a retry twice for a redelivered attempt", async () => {
    env = await createTestEnv({ RETRY_DELAY_MS: "200" });
    const e = env;
    const msg = order({ requiredAttempts: 2 });
    // Two copies of attempt 1, as after a crash between the retry publish and the ack.
    await publishRaw(e, encodeMessage(msg), { [HEADERS.attempt]: 1 }, msg.messageId);
    await e.startConsumer({ CONSUMER_BATCH_SIZE: "1" });
    await waitFor(
      () => e.log.collection.countDocuments({ messageId: msg.messageId }),
      (n) => n >= 1,
    );
    await publishRaw(e, encodeMessage(msg), { [HEADERS.attempt]: 1 }, msg.messageId);
    await e.drained();
    await expectOneRetryThenSuccess(e, msg);
  });

  it("lets only the copy that claimed an attempt forward it, also after a redelivery", async () => {
    env = await createTestEnv({ RETRY_DELAY_MS: "100" });
    const e = env;
    const msg = order({ requiredAttempts: 2 });
    // As after a crash before the commit: copy-a claimed (logged) attempt 1, then died;
    // its redelivery must still forward it, while copy-b (a second publish) must not.
    const now = new Date();
    await e.log.insert([
      {
        ...deliveryLogFields({ message: msg, attempt: 1, round: 0 }),
        messageId: msg.messageId,
        status: "RETRY_SCHEDULED",
        maxAttempts: e.config.retry.maxAttempts,
        processedAt: now,
        expiresAt: e.log.expiryFrom(now),
        retained: false,
        durationMs: 1,
        consumerId: "crashed",
        copyId: "copy-a",
        error: "attempt 1 failed",
      },
    ]);
    await e.broker.withChannel(async (ch) => {
      for (const copy of ["copy-b", "copy-a"]) {
        ch.sendToQueue(e.broker.topology.primary, encodeMessage(msg), {
          persistent: true,
          contentType: CONTENT_TYPE,
          messageId: msg.messageId,
          headers: { [HEADERS.attempt]: 1, [HEADERS.copyId]: copy },
        });
      }
      await ch.checkQueue(e.broker.topology.primary);
    });
    await e.startConsumer();
    await e.drained();
    await expectOneRetryThenSuccess(e, msg);
    const events = await e.redis.hgetall(counterKey(e.config));
    expect(events).toEqual({ "SYSTEM1:RETRY_SCHEDULED": "1", "SYSTEM1:SUCCEEDED": "1" });
  });

  it("acks a redelivered copy without forwarding again once its forward was confirmed", async () => {
    env = await createTestEnv({ RETRY_DELAY_MS: "100" });
    const e = env;
    const last = e.config.retry.maxAttempts;
    const failing = { product: "Mouse", price: "19.90", securityCheck: false };
    const forwarded = order({ requiredAttempts: last + 1, order: failing });
    const fresh = order({ requiredAttempts: last + 1, order: failing });
    // As after a broker crash that lost the ack of a batch whose dead letter it had
    // confirmed: copy-a owns its claim and is marked forwarded, and comes back.
    const now = new Date();
    await e.log.insert([
      {
        ...deliveryLogFields({ message: forwarded, attempt: last, round: 0 }),
        messageId: forwarded.messageId,
        status: "DEAD_LETTERED",
        maxAttempts: e.config.retry.maxAttempts,
        processedAt: now,
        expiresAt: null,
        retained: true,
        durationMs: 1,
        consumerId: "crashed",
        copyId: "copy-a",
        error: `attempt ${last} failed`,
      },
    ]);
    await e.redis.set(forwardedKey(e.config, "copy-a"), "1");
    await sendCopies(e, forwarded, ["copy-a"], last);
    await sendCopies(e, fresh, ["copy-b"], last);
    await e.startConsumer();
    await e.drained();
    const dead = await dlqMessages(e);
    expect(dead.map((d) => (JSON.parse(d.body.toString()) as OrderMessage).messageId)).toEqual([fresh.messageId]);
    expect((await e.log.history(forwarded.messageId)).map((h) => [h.attempt, h.status])).toEqual([[last, "DEAD_LETTERED"]]);
  });

  it("shares the queue between two consumers without changing the result", async () => {
    // A small prefetch so that one consumer cannot take the whole queue at once.
    env = await createTestEnv({ RETRY_DELAY_MS: "200", CONSUMER_BATCH_SIZE: "20", CONSUMER_PREFETCH: "20" });
    const e = env;
    const a = await e.startConsumer();
    const b = await e.startConsumer();
    await gqlOn(e, SEED, { system: "SYSTEM1", count: 600 });
    await gqlOn(e, PUBLISH, { system: "SYSTEM1" });
    await e.drained(120_000);
    expect(a.consumer.stats().processed).toBeGreaterThan(0);
    expect(b.consumer.stats().processed).toBeGreaterThan(0);
    expect(await e.endput.endputOrder.count()).toBe(await e.sources.SYSTEM1.order.count({ where: { securityCheck: true } }));
    expect((await dlqMessages(e)).length).toBe(await e.sources.SYSTEM1.order.count({ where: { securityCheck: false } }));
    const ids = (await e.log.collection.find({}, { projection: { messageId: 1, attempt: 1 } }).toArray()).map(
      (d) => `${d.messageId}:${d.attempt}`,
    );
    expect(new Set(ids).size).toBe(ids.length);
  });

  it("loses nothing when stopped gracefully mid-run and started again", async () => {
    env = await createTestEnv({ RETRY_DELAY_MS: "200", CONSUMER_BATCH_SIZE: "25" });
    const e = env;
    await gqlOn(e, SEED, { system: "SYSTEM2", count: 2000 });
    await gqlOn(e, PUBLISH, { system: "SYSTEM2" });
    const first = await e.startConsumer();
    await waitFor(
      async () => first.consumer.stats().processed,
      (n) => n >= 200,
    );
    await first.stop();
    const processedBeforeStop = first.consumer.stats().processed;
    expect(processedBeforeStop).toBeLessThan(2000 * 2);
    await e.startConsumer();
    await e.drained(120_000);
    expect(await e.endput.endputOrder.count()).toBe(await e.sources.SYSTEM2.order.count({ where: { securityCheck: true } }));
    expect((await dlqMessages(e)).length).toBe(await e.sources.SYSTEM2.order.count({ where: { securityCheck: false } }));
  });

  it("publishes an event for every logged attempt on the Redis channel", async () => {
    env = await createTestEnv({ RETRY_DELAY_MS: "100" });
    const e = env;
    const { sub, events } = await subscribeEvents(e);
    try {
      await e.startConsumer();
      const msg = order({ requiredAttempts: 3, source: { system: "SYSTEM2", orderId: 42 } });
      await publishRaw(e, encodeMessage(msg), { [HEADERS.attempt]: 1 }, msg.messageId);
      await e.drained();
      await waitFor(
        async () => events.length,
        (n) => n >= 3,
      );
      expect(events.map((ev) => [ev.messageId, ev.system, ev.orderId, ev.attempt, ev.status])).toEqual([
        [msg.messageId, "SYSTEM2", 42, 1, "RETRY_SCHEDULED"],
        [msg.messageId, "SYSTEM2", 42, 2, "RETRY_SCHEDULED"],
        [msg.messageId, "SYSTEM2", 42, 3, "SUCCEEDED"],
      ]);
    } finally {
      await sub.quit();
    }
  });
});

/** Holds an exclusive lock on the endput table: a consumer's endput insert waits on it. */
async function lockEndput(e: TestEnv) {
  const holder = new pg.Client({ connectionString: e.config.databases.endput });
  // pg_stat_activity is a snapshot per transaction: the lock holder cannot watch it.
  const watcher = new pg.Client({ connectionString: e.config.databases.endput });
  await Promise.all([holder.connect(), watcher.connect()]);
  await holder.query("begin");
  await holder.query("lock table orders in exclusive mode");
  const database = new URL(e.config.databases.endput).pathname.slice(1);
  const waiters = "from pg_stat_activity where datname = $1 and wait_event_type = 'Lock'";
  return {
    /** Resolves once an endput insert waits on the lock. */
    waiting: () =>
      waitFor(
        async () => (await watcher.query(`select pid ${waiters}`, [database])).rowCount,
        (n) => (n ?? 0) > 0,
      ),
    /** Cancels the waiting inserts (their consumer is gone) and releases the lock. */
    async release() {
      await watcher.query(`select pg_cancel_backend(pid) ${waiters}`, [database]);
      await holder.query("commit");
      await Promise.all([holder.end(), watcher.end()]);
    },
  };
}

/** A consumer dies before its commit: its connection goes, its held endput insert is cancelled. */
async function crash(c: RunningConsumer, lock: Awaited<ReturnType<typeof lockEndput>>) {
  await c.broker.close();
  await lock.release();
  await c.stop();
}

/** Sends copies of one attempt straight to the primary queue, in this order. */
async function sendCopies(e: TestEnv, msg: OrderMessage, copies: string[], attempt = 1) {
  await e.broker.withChannel(async (ch) => {
    for (const copy of copies) {
      ch.sendToQueue(e.broker.topology.primary, encodeMessage(msg), {
        persistent: true,
        contentType: CONTENT_TYPE,
        messageId: msg.messageId,
        headers: { [HEADERS.attempt]: attempt, [HEADERS.copyId]: copy },
      });
    }
    await ch.checkQueue(e.broker.topology.primary);
  });
}

/** Copy ids of the primary queue's messages in queue order; they stay in the queue. */
async function primaryCopies(e: TestEnv): Promise<string[]> {
  return e.broker.withChannel(async (ch) => {
    const out: string[] = [];
    for (;;) {
      const m = await ch.get(e.broker.topology.primary, { noAck: false });
      if (!m) break;
      out.push(String(m.properties.headers?.[HEADERS.copyId]));
    }
    return out;
  });
}

describe("crash windows", () => {
  it("forwards an attempt whose claim the second of two copies in one batch holds", async () => {
    env = await createTestEnv();
    const e = env;
    const msg = order();
    await sendCopies(e, msg, ["copy-a", "copy-b"]);
    // copy-a is held aside while a consumer takes copy-b, claims its attempt and waits
    // on the endput table; that consumer dies before its commit.
    let took!: (copy: string) => void;
    const taken = new Promise<string>((r) => (took = r));
    let giveBack!: () => void;
    const holder = e.broker.withChannel(async (ch) => {
      const m = await ch.get(e.broker.topology.primary, { noAck: false });
      took(String(m && m.properties.headers?.[HEADERS.copyId]));
      await new Promise<void>((r) => (giveBack = r));
    });
    expect(await taken).toBe("copy-a");
    const lock = await lockEndput(e);
    const first = await e.startConsumer();
    await lock.waiting();
    await crash(first, lock);
    giveBack();
    await holder;
    // Both copies are back, the one that does not own the claim first: one batch takes both.
    expect(await primaryCopies(e)).toEqual(["copy-a", "copy-b"]);
    await e.startConsumer();
    await e.drained();
    expect(await e.endput.endputOrder.count()).toBe(1);
    expect((await e.log.history(msg.messageId)).map((h) => h.status)).toEqual(["SUCCEEDED"]);
  });

  it("counts and announces an attempt once when its batch is redelivered after the counters", async () => {
    env = await createTestEnv({ RETRY_DELAY_MS: "100" });
    const e = env;
    const { sub, events } = await subscribeEvents(e);
    try {
      const held = order();
      const retried = order({ requiredAttempts: 2 });
      const lock = await lockEndput(e);
      const first = await e.startConsumer();
      // Batch 1 waits on the endput table; batch 2 (a retry, no endput row) does all its
      // store writes and waits for batch 1's ack before its commit. Then the consumer dies.
      await publishRaw(e, encodeMessage(held), { [HEADERS.attempt]: 1 }, held.messageId);
      await lock.waiting();
      await publishRaw(e, encodeMessage(retried), { [HEADERS.attempt]: 1 }, retried.messageId);
      await waitFor(
        () => e.redis.hget(counterKey(e.config), "SYSTEM1:RETRY_SCHEDULED"),
        (n) => n === "1",
      );
      await crash(first, lock);
      await e.startConsumer();
      await e.drained();
      await waitFor(
        async () => events.length,
        (n) => n >= 3,
      );
      expect(await e.redis.hgetall(counterKey(e.config))).toEqual({ "SYSTEM1:RETRY_SCHEDULED": "1", "SYSTEM1:SUCCEEDED": "2" });
      expect(
        events.map((ev) => `${ev.messageId === held.messageId ? "held" : "retried"}:${ev.attempt}:${ev.status}`).sort(),
      ).toEqual(["held:1:SUCCEEDED", "retried:1:RETRY_SCHEDULED", "retried:2:SUCCEEDED"]);
      expect(await e.endput.endputOrder.count()).toBe(2);
    } finally {
      await sub.quit();
    }
  });

  it("logs an unreadable message under one id however often it is redelivered", async () => {
    env = await createTestEnv();
    const e = env;
    const held = order();
    const lock = await lockEndput(e);
    const first = await e.startConsumer();
    // Batch 1 waits on the endput table; batch 2, an unreadable message without a
    // message id, is logged and waits for batch 1's ack. Then the consumer dies.
    await publishRaw(e, encodeMessage(held), { [HEADERS.attempt]: 1 }, held.messageId);
    await lock.waiting();
    await publishRaw(e, Buffer.from("not json"), { [HEADERS.attempt]: 1 });
    await waitFor(
      () => e.log.collection.countDocuments({ status: "REJECTED" }),
      (n) => n === 1,
    );
    await crash(first, lock);
    await e.startConsumer();
    await e.drained();
    const rejected = await e.log.collection.find({ status: "REJECTED" }).toArray();
    expect(rejected).toHaveLength(1);
    expect(rejected[0]!.messageId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect((await dlqMessages(e)).length).toBe(1);
    expect(await e.redis.hgetall(counterKey(e.config))).toEqual({ "UNKNOWN:REJECTED": "1", "SYSTEM1:SUCCEEDED": "1" });
  });

  it("dead-letters every one of identical unreadable messages", async () => {
    env = await createTestEnv();
    const e = env;
    // Sent as a foreign publisher would, without a copy id: each is told by its content. Three
    // arrive in one batch, two carry message ids of their own, a sixth comes in a later batch.
    const send = (messageIds: (string | undefined)[]) =>
      e.broker.withChannel(async (ch) => {
        for (const messageId of messageIds)
          ch.sendToQueue(e.broker.topology.primary, Buffer.from("not json"), {
            persistent: true,
            headers: { [HEADERS.attempt]: 1 },
            ...(messageId ? { messageId } : {}),
          });
        await ch.checkQueue(e.broker.topology.primary);
      });
    await send([undefined, undefined, undefined, "unreadable-a", "unreadable-b"]);
    await e.startConsumer();
    await e.drained();
    await send([undefined]);
    await e.drained();
    expect((await dlqMessages(e)).length).toBe(6);
  });

  it("does not process an attempt again once Redis lost its keys", async () => {
    env = await createTestEnv({ RETRY_DELAY_MS: "100", MAX_ATTEMPTS: "2" });
    const e = env;
    await e.startConsumer();
    await gqlOn(e, SEED, { system: "SYSTEM1", count: 20 });
    await gqlOn(e, PUBLISH, { system: "SYSTEM1" });
    await e.drained();
    const before = {
      endput: await e.endput.endputOrder.count(),
      dead: (await dlqMessages(e)).length,
      log: await e.log.collection.countDocuments({}),
      counters: await e.redis.hgetall(counterKey(e.config)),
    };
    expect(before.endput + before.dead).toBe(20);
    // Redis restarted empty of everything but the counters; every row is published again.
    const keys = (await e.redis.keys(`${e.config.redis.prefix}:*`)).filter((k) => k !== counterKey(e.config));
    if (keys.length > 0) await e.redis.del(...keys);
    const reset = await gqlOn(
      e,
      graphql(`
        mutation {
          resetCursor(system: SYSTEM1, to: 0) {
            system
          }
        }
      `),
    );
    expect(reset.errors).toBeUndefined();
    expect((await gqlOn(e, PUBLISH, { system: "SYSTEM1" })).data).toEqual({ publishPending: { published: 20 } });
    await e.drained();
    expect(await e.endput.endputOrder.count()).toBe(before.endput);
    expect((await dlqMessages(e)).length).toBe(before.dead);
    expect(await e.log.collection.countDocuments({})).toBe(before.log);
    expect(await e.redis.hgetall(counterKey(e.config))).toEqual(before.counters);
  });
});

describe("quorum queues", () => {
  it("runs the same pipeline with a quorum primary queue", async () => {
    env = await createTestEnv({ AMQP_QUEUE_TYPE: "quorum", RETRY_DELAY_MS: "100", MAX_ATTEMPTS: "3" });
    const e = env;
    await e.startConsumer();
    await gqlOn(e, SEED, { system: "SYSTEM1", count: 100 });
    await gqlOn(e, PUBLISH, { system: "SYSTEM1" });
    await e.drained();
    // What the broker says of the queue it holds, not what the test asked for.
    const res = await management(e, `/api/queues/%2F/${encodeURIComponent(e.broker.topology.primary)}`);
    expect(res.status).toBe(200);
    const queue = (await res.json()) as { type: string; arguments: Record<string, unknown> };
    expect(queue.type).toBe("quorum");
    expect(queue.arguments).toMatchObject({ "x-dead-letter-routing-key": e.broker.topology.dlq });
    expect(await e.endput.endputOrder.count()).toBe(await e.sources.SYSTEM1.order.count({ where: { securityCheck: true } }));
    expect((await dlqMessages(e)).length).toBe(await e.sources.SYSTEM1.order.count({ where: { securityCheck: false } }));
  });

  it("dead-letters, never drops, what a quorum queue's delivery limit gives up on", async () => {
    env = await createTestEnv({ AMQP_QUEUE_TYPE: "quorum" });
    const e = env;
    const { primary, dlq } = e.broker.topology;
    // A broker-side delivery limit (RabbitMQ 4 sets 20 by default; here a policy sets 2).
    const policy = `/api/policies/%2F/${encodeURIComponent(`${e.id}-limit`)}`;
    const put = await management(e, policy, {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        pattern: `^${primary.replace(/\./g, "\\.")}$`,
        definition: { "delivery-limit": 2 },
        "apply-to": "queues",
      }),
    });
    expect(put.ok).toBe(true);
    try {
      const msg = order();
      await publishRaw(e, encodeMessage(msg), { [HEADERS.attempt]: 1 }, msg.messageId);
      // Returned without an ack until the limit: what a consumer that keeps crashing on it does.
      await e.broker.withChannel(async (ch) => {
        for (let i = 0; i < 5; i++) {
          const m = await waitFor(
            () => ch.get(primary, { noAck: false }),
            (got) => got !== false || i >= 3,
            3000,
          );
          if (!m) break;
          ch.nack(m, false, true);
        }
      });
      await waitFor(
        () => e.queueDepth(dlq),
        (n) => n === 1,
        10_000,
      );
      expect(await e.queueDepth(primary)).toBe(0);
    } finally {
      await management(e, policy, { method: "DELETE" });
    }
  });
});

describe("attempt log retention", () => {
  it.runIf(logServer.ttlIndexes)("on a server with TTL indexes (MongoDB), expires the log with one", async () => {
    env = await createTestEnv();
    expect(env.log.retention()).toBe("ttl-index");
    const expiry = (await env.log.collection.indexes()).find((i) => i.key.expiresAt === 1);
    expect(expiry?.expireAfterSeconds).toBe(0);
  });

  it.skipIf(logServer.ttlIndexes)("on a server without TTL indexes (FerretDB), expires the log with the sweeper", async () => {
    env = await createTestEnv();
    expect(env.log.retention()).toBe("sweeper");
    // FerretDB scans for a range whatever the indexes: an expiry index would only cost writes.
    expect((await env.log.collection.indexes()).find((i) => i.key.expiresAt === 1)).toBeUndefined();
  });

  it("sweeps expired documents but keeps the history of dead-lettered messages", async () => {
    env = await createTestEnv({ LOG_RETENTION: "sweeper", LOG_TTL_SECONDS: "1" });
    const e = env;
    expect(e.log.retention()).toBe("sweeper");
    const now = new Date();
    const base = {
      round: 0,
      requiredAttempts: 1,
      maxAttempts: 5,
      system: "SYSTEM1" as const,
      orderId: 1,
      publishedAt: now,
      order: { product: "x", price: "1.00", securityCheck: true },
      error: null,
      processedAt: now,
      durationMs: 1,
      consumerId: "t",
    };
    const old = new Date(now.getTime() - 5000);
    await e.log.insert([
      { ...base, messageId: "a", attempt: 1, status: "SUCCEEDED", expiresAt: old, retained: false },
      { ...base, messageId: "b", attempt: 1, status: "RETRY_SCHEDULED", expiresAt: old, retained: false },
      { ...base, messageId: "b", attempt: 2, status: "DEAD_LETTERED", expiresAt: null, retained: true },
      { ...base, messageId: "c", attempt: 1, status: "SUCCEEDED", expiresAt: new Date(now.getTime() + 60_000), retained: false },
    ]);
    // What the consumer does when it dead-letters b.
    await e.log.retain(["b"]);
    expect(await e.log.sweep()).toBe(1);
    const left = (await e.log.collection.find({}).toArray()).map((d) => `${d.messageId}:${d.attempt}`).sort();
    expect(left).toEqual(["b:1", "b:2", "c:1"]);
    // Once redriven, the dead-lettered history may expire like any other.
    await e.log.release(["b"]);
    await e.log.collection.updateMany({ messageId: "b" }, { $set: { expiresAt: old } });
    expect(await e.log.sweep()).toBe(2);
  });

  it("sweeps with one query of the same size however many histories are retained", async () => {
    env = await createTestEnv({ LOG_RETENTION: "sweeper" });
    const e = env;
    const client = new MongoClient(e.config.mongo.url, { monitorCommands: true });
    const sent: { name: string; bytes: number }[] = [];
    client.on("commandStarted", (ev) => sent.push({ name: ev.commandName, bytes: JSON.stringify(ev.command).length }));
    try {
      const log = createAttemptLog({ db: client.db(e.config.mongo.database), config: e.config, logger: e.logger });
      await log.ensureIndexes();
      const past = new Date(Date.now() - 60_000);
      const doc = (messageId: string, status: "RETRY_SCHEDULED" | "DEAD_LETTERED", attempt: number) =>
        logEntry({
          messageId,
          attempt,
          status,
          requiredAttempts: 6,
          maxAttempts: 2,
          publishedAt: past,
          order: { product: "x", price: "1.00", securityCheck: false },
          error: "failed",
          processedAt: past,
          expiresAt: status === "DEAD_LETTERED" ? null : past,
          retained: status === "DEAD_LETTERED",
        });
      // 300 dead-lettered histories (their first attempt already past its expiry) and one expired message.
      const dead = Array.from({ length: 300 }, () => randomUUID());
      await log.insert([
        ...dead.flatMap((id) => [doc(id, "RETRY_SCHEDULED", 1), doc(id, "DEAD_LETTERED", 2)]),
        doc("expired", "RETRY_SCHEDULED", 1),
      ]);
      await log.retain(dead);
      sent.length = 0;
      expect(await log.sweep()).toBe(1);
      expect(await log.collection.countDocuments({})).toBe(600);
      // No list of retained ids travels with the sweep.
      expect(sent.length).toBeGreaterThan(0);
      for (const c of sent) expect(c.bytes, c.name).toBeLessThan(1000);
    } finally {
      await client.close();
    }
  });

  it("sweeps on its interval only in the consumer whose turn it is", async () => {
    env = await createTestEnv({ LOG_RETENTION: "sweeper", LOG_SWEEP_INTERVAL_MS: "100" });
    const e = env;
    const past = new Date(Date.now() - 60_000);
    const doc = (messageId: string) => logEntry({ messageId, publishedAt: past, processedAt: past, expiresAt: past });
    await e.log.insert([doc("a")]);
    let turns = 0;
    const notMine = e.log.startSweeper(async () => (turns++, false));
    await waitFor(
      async () => turns,
      (n) => n >= 3,
    );
    notMine();
    expect(await e.log.collection.countDocuments({})).toBe(1);
    const mine = e.log.startSweeper(async () => true);
    try {
      await waitFor(
        () => e.log.collection.countDocuments({}),
        (n) => n === 0,
      );
    } finally {
      mine();
    }
  });
});
