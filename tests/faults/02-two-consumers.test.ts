// Scenario 2: two consumers share the queue; one is SIGKILLed while it holds a
// full prefetch window of unacked deliveries; the other carries on alone.
import { afterAll, describe, expect, it } from "vitest";

import { expectInvariantHolds, waitDrained } from "./support/invariant.ts";
import { pendingWork, publishAll, seed, sleep } from "./support/ops.ts";
import { processedBy } from "./support/processes.ts";
import { startReport } from "./support/report.ts";
import { createWorld, type World } from "./support/world.ts";

const PER_SYSTEM = 5_000;
const PREFETCH = 500;

let world: World | undefined;
afterAll(async () => world?.cleanup());

describe("2. two consumers, one killed", () => {
  it("the surviving consumer finishes the run with nothing lost or duplicated", async () => {
    const report = startReport("2", "two consumers, one killed");
    world = await createWorld("s2", { CONSUMER_PREFETCH: String(PREFETCH) });
    const w = world;
    await w.startGateway();
    const victim = await w.startConsumer();
    const survivor = await w.startConsumer();
    await seed(w, "SYSTEM1", PER_SYSTEM);
    await seed(w, "SYSTEM2", PER_SYSTEM);
    report.set({ orders: 2 * PER_SYSTEM, faults: "SIGKILL 1 of 2 consumers mid-batch" });
    await Promise.all([publishAll(w, "SYSTEM1"), publishAll(w, "SYSTEM2")]);

    // Kill the victim while it is processing (its count moved in the last 200 ms) and
    // more than two prefetch windows are ready, so its own window was full of unacked deliveries.
    await sleep(1000 + Math.floor(Math.random() * 1500));
    let before = await processedBy(victim);
    let pending: number;
    for (;;) {
      await sleep(200);
      const now = await processedBy(victim);
      pending = await pendingWork(w);
      if (now > before && pending > 2 * PREFETCH) break;
      before = now;
    }
    const victimProcessed = await processedBy(victim);
    await victim.kill();
    const survivorAtKill = await processedBy(survivor);
    report.detail("kill", { victimProcessed, survivorAtKill, pendingAtKill: pending });
    expect(victimProcessed).toBeGreaterThan(0);

    await report.time("drain", () => waitDrained(w));
    // The survivor did the rest, without being restarted.
    expect(survivor.alive()).toBe(true);
    const survivorTotal = await processedBy(survivor);
    report.detail("survivorTotal", survivorTotal);
    expect(survivorTotal).toBeGreaterThan(survivorAtKill);

    await expectInvariantHolds(w, report);
    report.pass();
  });
});
