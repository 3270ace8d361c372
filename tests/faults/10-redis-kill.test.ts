// Scenario 10: Redis is SIGKILLed mid-run (no shutdown) while the gateway publishes in small steps
// and the consumer works through retries, and comes back from its append-only file. Redis writes
// every command to that file before it answers and fsyncs it once a second, so a killed process
// loses nothing it acknowledged: the cursor must come back at least where the gateway last saw it
// move. (Only a crash of the whole machine can cost the writes of the last second, which the
// README describes; the republish it causes is the one tests/publish.test.ts absorbs.)
import { afterAll, describe, expect, it } from "vitest";

import { publishLockKey } from "../../common/keys.ts";
import { PUBLISH } from "../../gateway/client/operations.ts";
import { gqlOn } from "../typed-gql.ts";
import { killService, services } from "./support/fault-services.ts";
import { expectInvariantHolds, waitDrained } from "./support/invariant.ts";
import { attemptsDone, publishAll, seed, sleep } from "./support/ops.ts";
import { waitCheck } from "./support/processes.ts";
import { startReport } from "./support/report.ts";
import { createWorld, type World } from "./support/world.ts";

const PER_SYSTEM = 5_000;
const STEP = 200;
const DOWN_MS = 3_000;
// Far below PUBLISH_LOCK_TTL_MS (30 s), which is how long a publish lock that is never released blocks.
const RESUME_WITHIN_MS = 8_000;

let world: World | undefined;
let publishing = true;
afterAll(async () => {
  publishing = false;
  await world?.cleanup();
});

describe("10. redis kill -9", () => {
  it("comes back from its append-only file with every acknowledged cursor move; nothing is lost or duplicated", async () => {
    const report = startReport("10", "redis kill -9");
    world = await createWorld("s10");
    const w = world;
    const gateway = await w.startGateway();
    const consumer = await w.startConsumer();
    await seed(w, "SYSTEM1", PER_SYSTEM);
    await seed(w, "SYSTEM2", PER_SYSTEM);
    report.set({ orders: 2 * PER_SYSTEM, faults: `SIGKILL redis mid-publish, down ${DOWN_MS / 1000} s` });
    expect(await publishAll(w, "SYSTEM2")).toBe(PER_SYSTEM);

    // SYSTEM1 is published STEP rows at a time, so its cursor moves many times a second.
    let reported = 0;
    let restartedAt = Number.POSITIVE_INFINITY;
    let resumedAt = Number.POSITIVE_INFINITY;
    const refused: { code: string; afterRestart: boolean }[] = [];
    const publisher = (async () => {
      while (publishing) {
        const r = await gqlOn(w, PUBLISH, {
          system: "SYSTEM1",
          limit: STEP,
        });
        if (r.data) {
          reported = r.data.publishPending.cursor;
          if (Date.now() > restartedAt) resumedAt = Math.min(resumedAt, Date.now());
          if (r.data.publishPending.cursor >= PER_SYSTEM) return;
        } else refused.push({ code: String(r.errors?.[0]?.extensions?.code), afterRestart: Date.now() > restartedAt });
        await sleep(r.data ? 20 : 200);
      }
    })();

    while ((await attemptsDone(w)) < 2_000 || reported < PER_SYSTEM / 4) await sleep(50);
    // Kill while a publish holds its lock, so the kill lands inside a request that cannot release it.
    const lockKey = publishLockKey(w.config, "SYSTEM1");
    while ((await w.redis.exists(lockKey)) === 0) await sleep(2);
    const beforeKill = reported;
    expect(beforeKill, "the kill must land while SYSTEM1 is still being published").toBeLessThan(PER_SYSTEM);
    killService("redis");
    await sleep(DOWN_MS);
    restartedAt = Date.now();
    await services("start", "redis");

    // What the append-only file kept: at least every cursor move the gateway reported.
    const afterRestart = await w.cursor("SYSTEM1");
    expect(afterRestart).toBeGreaterThanOrEqual(beforeKill);

    await waitCheck(consumer, "redis", 60_000);
    await waitCheck(gateway, "redis", 60_000);
    const recoveredMs = Date.now() - restartedAt;
    await publisher;
    expect(await w.cursor("SYSTEM1")).toBe(PER_SYSTEM);
    report.detail("redis", {
      beforeKill,
      afterRestart,
      refused: refused.length,
      recoveredMs,
      resumedMs: resumedAt - restartedAt,
    });
    report.note(
      `cursor ${beforeKill} as last reported before the kill, ${afterRestart} after the restart; ` +
        `${refused.length} publishes refused while Redis was down or coming back; both processes ready ${recoveredMs} ms ` +
        `and publishing again ${resumedAt - restartedAt} ms after Redis was started again`,
    );
    // While Redis is down a publish is refused as unavailable. The request in flight at the kill
    // could not release its publish lock, which the append-only file kept: the gateway releases it
    // as soon as Redis is back, instead of leaving every publish refused until the lock expires.
    expect(refused.length, "the publish in flight at the kill was refused").toBeGreaterThan(0);
    for (const r of refused.filter((r) => !r.afterRestart)) expect(r.code).toBe("DEPENDENCY_UNAVAILABLE");
    for (const r of refused.filter((r) => r.afterRestart))
      expect(["DEPENDENCY_UNAVAILABLE", "PUBLISH_IN_PROGRESS"]).toContain(r.code);
    expect(resumedAt - restartedAt, "publishing resumed well before the lock's time to live").toBeLessThan(RESUME_WITHIN_MS);

    await report.time("drain", () => waitDrained(w));
    expect([gateway.alive(), consumer.alive()]).toEqual([true, true]);
    await expectInvariantHolds(w, report);
    report.pass();
  });
});
