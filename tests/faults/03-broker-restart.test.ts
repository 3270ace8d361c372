// Scenario 3: RabbitMQ restarts mid-run. The gateway and the consumer reconnect
// by themselves; a publish attempted while the broker is down fails with
// DEPENDENCY_UNAVAILABLE (rabbitmq) and leaves the cursor where it was.
import { afterAll, describe, expect, it } from "vitest";

import { PUBLISH } from "../../gateway/client/operations.ts";
import { gqlOn } from "../typed-gql.ts";
import { services } from "./support/fault-services.ts";
import { expectInvariantHolds, waitDrained } from "./support/invariant.ts";
import { attemptsDone, publishAll, seed, sleep } from "./support/ops.ts";
import { readiness, waitCheck } from "./support/processes.ts";
import { startReport } from "./support/report.ts";
import { createWorld, type World } from "./support/world.ts";

const SYSTEM1_ORDERS = 10_000;
const SYSTEM2_ORDERS = 4_000;

let world: World | undefined;
afterAll(async () => world?.cleanup());

describe("3. broker restart", () => {
  it("reconnects without a process restart, refuses publishes while down and resumes after", async () => {
    const report = startReport("3", "broker restart");
    world = await createWorld("s3");
    const w = world;
    const gateway = await w.startGateway();
    const consumer = await w.startConsumer();
    await seed(w, "SYSTEM1", SYSTEM1_ORDERS);
    await seed(w, "SYSTEM2", SYSTEM2_ORDERS);
    report.set({ orders: SYSTEM1_ORDERS + SYSTEM2_ORDERS, faults: "restart rabbitmq mid-run" });
    expect(await publishAll(w, "SYSTEM1")).toBe(SYSTEM1_ORDERS);
    while ((await attemptsDone(w)) < 4_000) await sleep(100);

    // Restart the broker while the consumer is busy.
    const restartStarted = Date.now();
    const restart = services("restart", "rabbitmq").then(() => Date.now() - restartStarted);
    let restarted = false;
    void restart.finally(() => (restarted = true));

    // Once the gateway has lost the broker, publishes must fail cleanly and not move the cursor.
    const refused: { code: unknown; dependency: unknown; message: string }[] = [];
    // Whether a publish raced the broker's return and succeeded (which ends the loop).
    let raced = false;
    while (!restarted) {
      const r = await readiness(gateway).catch(() => undefined);
      if (r?.failing.includes("rabbitmq")) {
        const res = await gqlOn(w, PUBLISH, { system: "SYSTEM2" });
        const err = res.errors?.[0];
        expect(res.status).toBeLessThan(500);
        if (err) {
          refused.push({ code: err.extensions?.code, dependency: err.extensions?.dependency, message: err.message });
          expect(await w.cursor("SYSTEM2")).toBe(0);
        } else {
          // The broker came back between the readiness check and the publish: such a publish is
          // allowed only if it published everything (the cursor is checked below).
          expect(res.data?.publishPending.published).toBe(SYSTEM2_ORDERS);
          raced = true;
          break;
        }
        await sleep(500);
      } else await sleep(50);
    }
    const restartMs = await restart;
    report.detail("restart", { restartMs, refusedPublishes: refused.length, sample: refused[0] });
    expect(refused.length).toBeGreaterThan(0);
    for (const r of refused) expect([r.code, r.dependency]).toEqual(["DEPENDENCY_UNAVAILABLE", "rabbitmq"]);

    // Both processes reconnect by themselves: the same pids pass their rabbitmq check again
    // (the consumer's means "consuming"). Only that check: the others do not depend on the broker.
    await waitCheck(gateway, "rabbitmq", 60_000);
    await waitCheck(consumer, "rabbitmq", 60_000);
    expect([gateway.alive(), consumer.alive()]).toEqual([true, true]);
    const resumed = await publishAll(w, "SYSTEM2");
    expect(resumed + (raced ? SYSTEM2_ORDERS : 0)).toBe(SYSTEM2_ORDERS);
    expect(await w.cursor("SYSTEM2")).toBe(SYSTEM2_ORDERS);

    await report.time("drain", () => waitDrained(w));
    expect([gateway.alive(), consumer.alive()]).toEqual([true, true]);
    await expectInvariantHolds(w, report);
    report.pass();
  });
});
