// Scenario 1b: the consumer is SIGKILLed while its batches hold with their endput
// and log writes done and their claims taken, but their forwards and acks not yet
// committed. Redis is stopped for a moment so that the batches in flight hold;
// then the consumer is killed and restarted. The redelivered batches must
// publish each retry and dead letter exactly once.
import { afterAll, describe, expect, it } from "vitest";

import { services } from "./support/fault-services.ts";
import { expectInvariantHolds, waitDrained } from "./support/invariant.ts";
import { attemptsDone, publishAll, seed, sleep } from "./support/ops.ts";
import { duplicatesSeen, resumedSeen } from "./support/processes.ts";
import { startReport } from "./support/report.ts";
import { createWorld, type World } from "./support/world.ts";

const ORDERS = 3_000;
const ROUNDS = 3;

let world: World | undefined;
let redisDown = false;
afterAll(async () => {
  if (redisDown) await services("start", "redis");
  await world?.cleanup();
});

describe("1b. consumer crash with batches held before their commit", () => {
  it("does not duplicate dead letters when a batch is redelivered after its forwards were confirmed", async () => {
    const report = startReport("1b", "crash with batches held before commit");
    world = await createWorld("s1b");
    const w = world;
    await w.startGateway();
    let consumer = await w.startConsumer();
    await seed(w, "SYSTEM1", ORDERS);
    report.set({ orders: ORDERS, faults: `${ROUNDS} x (redis stop + SIGKILL consumer)` });
    expect(await publishAll(w, "SYSTEM1")).toBe(ORDERS);

    // The seed's half of true orders needs 1..max attempts, its false half max: (3 max + 1) / 4 per order.
    const maxAttempts = w.config.retry.maxAttempts;
    const expectedAttempts = (ORDERS * (3 * maxAttempts + 1)) / 4;
    const rounds: { attemptsDone: number; resumed: number; duplicatesSeenAfter: number }[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      // Let the run reach its later attempts, where batches carry dead letters: a third of the
      // way, then a half, then two thirds.
      while ((await attemptsDone(w)) < (expectedAttempts * (i + 2)) / (ROUNDS + 3)) await sleep(50);
      const done = await attemptsDone(w);
      redisDown = true;
      await services("stop", "redis");
      await sleep(1_500);
      await consumer.kill();
      await services("start", "redis");
      redisDown = false;
      consumer = await w.startConsumer();
      // The kill reached the window: the new consumer finishes batches the old one had claimed.
      const started = Date.now();
      let resumed = await resumedSeen(consumer);
      while (resumed === 0 && Date.now() - started < 30_000) {
        await sleep(200);
        resumed = await resumedSeen(consumer);
      }
      rounds.push({ attemptsDone: done, resumed, duplicatesSeenAfter: await duplicatesSeen(consumer) });
    }
    report.detail("rounds", rounds);
    for (const r of rounds) expect(r.resumed, JSON.stringify(rounds)).toBeGreaterThan(0);

    await report.time("drain", () => waitDrained(w));
    await expectInvariantHolds(w, report);
    report.pass();
  });
});
