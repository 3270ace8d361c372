// Scenario 1: the consumer is SIGKILLed at random moments during a run with
// retries and restarted each time; nothing may be lost or duplicated.
import { afterAll, describe, expect, it } from "vitest";

import { expectInvariantHolds, waitDrained } from "./support/invariant.ts";
import { attemptsDone, pendingWork, publishAll, seed, sleep } from "./support/ops.ts";
import { startReport } from "./support/report.ts";
import { createWorld, type World } from "./support/world.ts";

const PER_SYSTEM = 10_000;
const KILLS = 6;

let world: World | undefined;
afterAll(async () => world?.cleanup());

describe("1. consumer crash", () => {
  it(`survives ${KILLS} SIGKILLs of the consumer during ${2 * PER_SYSTEM} orders with retries`, async () => {
    const report = startReport("1", "consumer crash");
    world = await createWorld("s1");
    const w = world;
    await w.startGateway();
    let consumer = await w.startConsumer();
    await seed(w, "SYSTEM1", PER_SYSTEM);
    await seed(w, "SYSTEM2", PER_SYSTEM);
    report.set({ orders: 2 * PER_SYSTEM, faults: `${KILLS} x SIGKILL consumer` });
    const published = await Promise.all([publishAll(w, "SYSTEM1"), publishAll(w, "SYSTEM2")]);
    expect(published).toEqual([PER_SYSTEM, PER_SYSTEM]);

    // Kill at random moments while work is still queued; restart after each kill.
    const kills: { afterMs: number; pending: number; attemptsDone: number }[] = [];
    for (let i = 0; i < KILLS; i++) {
      const afterMs = 300 + Math.floor(Math.random() * 2000);
      await sleep(afterMs);
      const pending = await pendingWork(w);
      const done = await attemptsDone(w);
      await consumer.kill();
      kills.push({ afterMs, pending, attemptsDone: done });
      const atKill = await attemptsDone(w);
      consumer = await w.startConsumer();
      // The counters count each attempt once, so redone work does not move them: wait for new
      // work before the next kill, or a kill could land before the restarted consumer did any.
      const deadline = Date.now() + 60_000;
      while ((await attemptsDone(w)) === atKill && Date.now() < deadline) await sleep(50);
    }
    report.detail("kills", kills);
    // Every kill hit a consumer with work left to do, and work was done between kills.
    for (const k of kills) expect(k.pending).toBeGreaterThan(0);
    expect(new Set(kills.map((k) => k.attemptsDone)).size).toBe(KILLS);

    await report.time("drain", () => waitDrained(w));
    const result = await expectInvariantHolds(w, report);
    expect(result.endputRows).toBe(result.trueOrders);
    report.pass();
  });
});
