// Scenario 5: the gateway is SIGKILLed in the middle of a large publishPending,
// restarted, and asked to publish again: no row is skipped and endput gets no
// duplicate, although the unconfirmed tail is published a second time.
import { afterAll, describe, expect, it } from "vitest";

import { graphql } from "../../gateway/client/graphql.ts";
import { PUBLISH } from "../../gateway/client/operations.ts";
import { gqlOn } from "../typed-gql.ts";
import { expectInvariantHolds, waitDrained } from "./support/invariant.ts";
import { seed, sleep } from "./support/ops.ts";
import { duplicatesSeen, readiness } from "./support/processes.ts";
import { startReport } from "./support/report.ts";
import { createWorld, type World } from "./support/world.ts";

const ORDERS = 20_000;
// The lock of the killed publish expires by itself; a short TTL keeps the wait short.
const LOCK_TTL_MS = 3_000;

let world: World | undefined;
afterAll(async () => world?.cleanup());

describe("5. gateway crash during publish", () => {
  it("republishes from the confirmed cursor after a SIGKILL mid-publish", async () => {
    const report = startReport("5", "gateway crash during publish");
    world = await createWorld("s5", { PUBLISH_LOCK_TTL_MS: String(LOCK_TTL_MS) });
    const w = world;
    const gateway = await w.startGateway();
    const consumer = await w.startConsumer();
    await seed(w, "SYSTEM1", ORDERS);
    report.set({ orders: ORDERS, faults: "SIGKILL gateway mid-publishPending" });

    // Start the big publish and kill the gateway at a random moment once a quarter of it is
    // confirmed, so that a batch is usually half sent: confirmed messages above the cursor.
    const publish = () => gqlOn(w, PUBLISH, { system: "SYSTEM1" });
    const inFlight = publish().catch((err: Error) => ({ status: 0, failed: err.message }));
    while ((await w.cursor("SYSTEM1")) < ORDERS / 4) await sleep(20);
    await sleep(Math.floor(Math.random() * 300));
    await gateway.kill();
    const cursorAtKill = await w.cursor("SYSTEM1");
    const answer = await inFlight;
    report.detail("kill", { cursorAtKill, answer });
    expect(cursorAtKill).toBeGreaterThan(0);
    expect(cursorAtKill).toBeLessThan(ORDERS);
    expect(answer).toHaveProperty("failed");

    // Restart and publish again; while the dead publisher's lock lives, the answer is PUBLISH_IN_PROGRESS.
    // Publishing needs the source databases, Redis and the broker: only those checks are awaited, since
    // the gateway's mongodb check (a full count of the log on FerretDB) times out while the log is busy.
    const restartedAt = Date.now();
    const restarted = await w.startGateway({}, ["postgresql:system1", "redis", "rabbitmq"]);
    report.detail("restart", { readyForPublishingMs: Date.now() - restartedAt, readiness: await readiness(restarted) });
    const deadline = Date.now() + 10 * LOCK_TTL_MS;
    let again: Awaited<ReturnType<typeof publish>>;
    const busy: string[] = [];
    for (;;) {
      again = await publish();
      const code = again.errors?.[0]?.extensions?.code;
      if (code !== "PUBLISH_IN_PROGRESS" || Date.now() > deadline) break;
      busy.push(String(code));
      await sleep(250);
    }
    report.detail("republish", { busyAnswers: busy.length, result: again.data ?? again.errors });
    expect(again.errors).toBeUndefined();
    // No row skipped: the second publish starts right after the confirmed cursor and reaches the end.
    expect(again.data!.publishPending).toEqual({
      system: "SYSTEM1",
      waitingOnTransactions: false,
      published: ORDERS - cursorAtKill,
      cursor: ORDERS,
      fromId: cursorAtKill + 1,
      toId: ORDERS,
    });

    // The tail published twice is counted once: published is rows, and nothing is left in flight.
    await report.time("drain", () => waitDrained(w));
    const stats = await gqlOn(
      w,
      graphql(`
        {
          pipelineStats {
            systems {
              system
              published
              inFlight
            }
          }
        }
      `),
    );
    expect(stats.data?.pipelineStats.systems.find((s) => s.system === "SYSTEM1")).toEqual({
      system: "SYSTEM1",
      published: ORDERS,
      inFlight: 0,
    });
    const duplicates = await duplicatesSeen(consumer);
    report.detail("duplicateDeliveriesSeenByConsumer", duplicates);
    report.note(`killed at cursor ${cursorAtKill}; the consumer acked ${duplicates} re-published deliveries as already handled`);
    await expectInvariantHolds(w, report);
    report.pass();
  });
});
