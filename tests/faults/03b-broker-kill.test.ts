// Scenario 3b: the broker crashes (SIGKILL of its node, not a shutdown) mid-run,
// while the consumer forwards batches full of retries and dead letters, and is
// started again each time. A batch's forwards go to other queues than its acks,
// so a crash must not leave an ack without its forward (a lost retry or dead
// letter) nor a forward twice. The gateway and the consumer reconnect by
// themselves; the run ends with the shared invariant. 3c aims the kills at the
// forward itself.
import { randomUUID } from "node:crypto";
import fs from "node:fs";

import type { Channel, ConsumeMessage } from "amqplib";
import { afterAll, describe, expect, it } from "vitest";

import { txSelect } from "../../common/amqp-tx.ts";
import { createBroker } from "../../common/broker.ts";
import { copyIdOf, encodeMessage, HEADERS } from "../../common/contract.ts";
import { createLogger } from "../../common/logger.ts";
import { decide } from "../../consumer/src/decide.ts";
import { createForwarder, type ForwardItem } from "../../consumer/src/forwarder.ts";
import { services } from "./support/fault-services.ts";
import { expectInvariantHolds, readDeadLetters, waitDrained } from "./support/invariant.ts";
import { attemptsDone, pendingWork, publishAll, seed, sleep } from "./support/ops.ts";
import { waitCheck } from "./support/processes.ts";
import { startReport } from "./support/report.ts";
import { createWorld, type World } from "./support/world.ts";

const SYSTEM1_ORDERS = 8_000;
const SYSTEM2_ORDERS = 1_000;
const KILLS = 4;
/** Attempts the consumer must commit after each reconnect before the next kill. */
const PROGRESS_BEFORE_KILL = 300;

/** Dead letters the forwarder commits in the many-kills check, and how many per batch. */
const DEAD_LETTERS = 20_000;
const FORWARD_BATCH = 500;
const COMMIT_KILLS = 8;

let world: World | undefined;
let brokerDown = false;
const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  if (brokerDown) await services("start", "rabbitmq");
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
  await world?.cleanup();
});

/** A small seeded generator: the kill points vary within a run but are the same from run to run. */
function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const countLines = (file: string, text: string) =>
  fs
    .readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l.includes(text)).length;

describe("3b. broker kill -9", () => {
  it(`loses and duplicates nothing across ${KILLS} SIGKILLs of the broker mid-run`, async () => {
    const report = startReport("3b", "broker kill -9");
    world = await createWorld("s3b");
    const w = world;
    const gateway = await w.startGateway();
    const consumer = await w.startConsumer();
    await seed(w, "SYSTEM1", SYSTEM1_ORDERS);
    await seed(w, "SYSTEM2", SYSTEM2_ORDERS);
    report.set({ orders: SYSTEM1_ORDERS + SYSTEM2_ORDERS, faults: `${KILLS} x SIGKILL rabbitmq mid-run, restart` });
    expect(await publishAll(w, "SYSTEM1")).toBe(SYSTEM1_ORDERS);

    const random = seeded(8);
    const kills: { attemptsDone: number; pending: number; downMs: number; recoverMs: number }[] = [];
    for (let i = 0; i < KILLS; i++) {
      // Kill only once the consumer is committing again, at a varying point of its flow.
      const from = await attemptsDone(w);
      while ((await attemptsDone(w)) < from + PROGRESS_BEFORE_KILL) await sleep(10);
      await sleep(Math.floor(random() * 150));
      const pending = await pendingWork(w);
      const done = await attemptsDone(w);
      const killedAt = Date.now();
      brokerDown = true;
      await services("kill", "rabbitmq");
      await services("start", "rabbitmq");
      brokerDown = false;
      const downMs = Date.now() - killedAt;
      // Recovered: the same consumer process consumes again and commits new work.
      await waitCheck(consumer, "rabbitmq", 60_000);
      while ((await attemptsDone(w)) <= done) await sleep(20);
      kills.push({ attemptsDone: done, pending, downMs, recoverMs: Date.now() - killedAt });
      report.detail("kills", kills);
    }
    // Every kill hit a run with work queued (how many forwards it cut off is recorded; 3c aims at them).
    for (const k of kills) expect(k.pending).toBeGreaterThan(0);
    const interruptedCommits = countLines(consumer.logFile, "commit failed");
    report.detail("interruptedCommits", interruptedCommits);

    // The gateway reconnected by itself and publishes again.
    await waitCheck(gateway, "rabbitmq", 60_000);
    expect(await publishAll(w, "SYSTEM2")).toBe(SYSTEM2_ORDERS);

    await report.time("drain", () => waitDrained(w));
    expect([gateway.alive(), consumer.alive()]).toEqual([true, true]);
    const recover = kills.map((k) => k.recoverMs).sort((a, b) => a - b);
    report.note(
      `${KILLS} kills, ${interruptedCommits} commits cut off; broker down ${Math.max(...kills.map((k) => k.downMs))} ms at most, ` +
        `consumer committing again ${recover[Math.floor(recover.length / 2)]} ms (median), ${recover.at(-1)} ms (max) after the kill`,
    );
    await expectInvariantHolds(w, report);
    report.pass();
  });

  // The window itself, without the rest of the batch around it: the consumer's forwarder
  // commits batches of dead letters (to the classic DLQ) and their acks (on a quorum primary)
  // back to back, so that nearly every kill lands while a commit is in flight.
  it(`forwards every dead letter it acked across ${COMMIT_KILLS} SIGKILLs of the broker mid-commit`, async () => {
    const report = startReport("3c", "broker kill -9 during commits");
    // Scenario 3b's processes would reconnect after every kill here: stop them first.
    await world?.cleanup();
    world = undefined;
    const w = await createWorld("s3c", { AMQP_QUEUE_TYPE: "quorum", LOG_LEVEL: "silent" });
    cleanups.push(() => w.cleanup());
    report.set({ orders: DEAD_LETTERS, faults: `${COMMIT_KILLS} x SIGKILL rabbitmq during forward commits` });
    const broker = createBroker({ config: w.config, logger: createLogger(w.config, "s3c"), name: "s3c", waitQueues: true });
    cleanups.push(() => broker.close());
    await broker.ready();
    const forwarder = createForwarder({ config: w.config, broker, redis: w.redis });
    const maxAttempts = w.config.retry.maxAttempts;

    // Deliveries at their last attempt that fail: each one's forward is a dead letter.
    const ids = Array.from({ length: DEAD_LETTERS }, () => randomUUID());
    for (let i = 0; i < ids.length; i += 1000)
      await w.publishRaw(
        ids.slice(i, i + 1000).map((messageId, j) => ({
          messageId,
          headers: { [HEADERS.attempt]: maxAttempts, [HEADERS.copyId]: randomUUID() },
          body: encodeMessage({
            messageId,
            source: { system: "SYSTEM1", orderId: i + j + 1 },
            order: { product: "probe", price: "1.00", securityCheck: false },
            requiredAttempts: maxAttempts + 1,
            publishedAt: new Date().toISOString(),
          }),
        })),
      );

    // A minimal consumer around the real forwarder: take a batch, forward it, ack it.
    let channel: Channel | undefined;
    let buffer: ConsumeMessage[] = [];
    let committed = 0;
    let committing = false;
    let cutOff = 0;
    let stopped = false;
    broker.onConnect(async (conn) => {
      const ch = await conn.createChannel();
      ch.on("error", () => undefined);
      ch.on("close", () => {
        if (channel !== ch) return;
        channel = undefined;
        buffer = [];
      });
      await txSelect(ch);
      await ch.prefetch(2 * FORWARD_BATCH);
      channel = ch;
      await ch.consume(w.topology.primary, (m) => m && ch === channel && buffer.push(m), { noAck: false });
    });
    const loop = (async () => {
      while (!stopped) {
        const ch = channel;
        if (!ch || buffer.length === 0) {
          await sleep(5);
          continue;
        }
        const batch = buffer.splice(0, FORWARD_BATCH);
        const items = batch.map((msg) => {
          const outcome = decide(msg.content, msg.properties.headers, { maxAttempts, maxMessageBytes: 1 << 20 });
          if (outcome.kind !== "DEAD_LETTERED") throw new Error(`unexpected outcome ${outcome.kind}`);
          const messageId = String(msg.properties.messageId);
          return { msg, outcome, messageId, copy: copyIdOf(msg.content, msg.properties.headers) } satisfies ForwardItem;
        });
        committing = true;
        try {
          await forwarder.commit(ch, items, batch.at(-1)!, () => ch === channel);
          committed++;
        } catch {
          cutOff++;
        } finally {
          committing = false;
        }
      }
    })();
    cleanups.push(async () => {
      stopped = true;
      await loop;
    });

    const random = seeded(88);
    const kills: { committedBefore: number; recoverMs: number }[] = [];
    for (let i = 0; i < COMMIT_KILLS; i++) {
      const from = committed;
      while (committed < from + 2) await sleep(5);
      // Kill while a commit is in flight, a few milliseconds into it.
      while (!committing) await sleep(1);
      await sleep(Math.floor(random() * 10));
      const killedAt = Date.now();
      const before = committed;
      brokerDown = true;
      await services("kill", "rabbitmq");
      await services("start", "rabbitmq");
      brokerDown = false;
      while (committed === before) await sleep(20);
      kills.push({ committedBefore: before, recoverMs: Date.now() - killedAt });
      report.detail("kills", kills);
    }
    report.detail("commitsCutOff", cutOff);
    expect(cutOff).toBeGreaterThan(0);

    // Let the forwarder finish the primary queue, then stop it and read what the DLQ holds.
    let quietSince = Date.now();
    while (Date.now() - quietSince < 2_000) {
      const left = (await w.readyCounts())[w.topology.primary]!;
      if (left > 0 || buffer.length > 0) quietSince = Date.now();
      await sleep(200);
    }
    stopped = true;
    await loop;
    await channel?.close().catch(() => undefined);
    const leftInPrimary = (await w.readyCounts())[w.topology.primary]!;
    const dead = await readDeadLetters(w);
    const perId = new Map<string, number>();
    for (const d of dead) perId.set(d.messageId ?? "?", (perId.get(d.messageId ?? "?") ?? 0) + 1);
    const lost = ids.filter((id) => !perId.has(id));
    const duplicated = [...perId.values()].reduce((n, c) => n + c - 1, 0);
    report.set({ lost: lost.length, duplicated });
    report.detail("forwarder", { batches: committed, commitsCutOff: cutOff, deadLetters: dead.length, leftInPrimary });
    report.note(
      `forwarder: ${committed} batches of ${FORWARD_BATCH} committed, ${cutOff} commits cut off by ${COMMIT_KILLS} kills; ` +
        `${lost.length} dead letters lost, ${duplicated} duplicated`,
    );
    // Nothing acked without its dead letter; every delivery was acked in the end.
    expect(leftInPrimary).toBe(0);
    expect(lost).toEqual([]);
    report.pass();
  });
});
