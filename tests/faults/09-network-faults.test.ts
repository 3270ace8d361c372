// Scenario 9: network faults through Toxiproxy, with the processes themselves
// healthy. The faulty links go through a proxy; every other link is direct.
//   9a consumer -> log server and consumer -> endput: 200 ms latency, plus
//      connection resets every 3 s, for 12 s;
//   9b consumer -> broker: down for 10 s (a partition);
//   9c gateway -> broker: down for 5 s in the middle of publishPending.
// Each case ends with the full invariant; the report records the time to recover.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";

import { PUBLISH } from "../../gateway/client/operations.ts";
import { gqlOn } from "../typed-gql.ts";
import { timeToProgress } from "./support/cluster.ts";
import { PORTS } from "./support/fault-services.ts";
import { expectInvariantHolds, waitDrained } from "./support/invariant.ts";
import { attemptsDone, publishAll, publishRetrying, seed, sleep } from "./support/ops.ts";
import { readiness, waitCheck } from "./support/processes.ts";
import { startReport } from "./support/report.ts";
import { startToxiproxy, type Toxiproxy } from "./support/toxiproxy.ts";
import { createWorld, type World } from "./support/world.ts";

const SYSTEM1_ORDERS = 2_500;
const SYSTEM2_ORDERS = 1_500;
const PROGRESS = 300;

let toxiproxy: Toxiproxy;
let world: World | undefined;

beforeAll(async () => {
  toxiproxy = await startToxiproxy();
}, 300_000);

afterEach(async () => {
  await world?.cleanup();
  world = undefined;
});

afterAll(async () => {
  await toxiproxy?.stop();
});

describe("9. network faults", () => {
  it("9a: rides out latency and resets on the consumer's links to the log server and endput", async () => {
    const report = startReport("9a", "network: latency + resets to log and endput");
    const FAULT_MS = 12_000;
    const mongo = await toxiproxy.link("s9a-mongo", `127.0.0.1:${PORTS.mongo}`);
    const endputLink = await toxiproxy.link("s9a-endput", `127.0.0.1:${PORTS.postgres}`);
    world = await createWorld("s9a");
    const w = world;
    await w.startGateway();
    const consumer = await w.startConsumer({
      // Through a proxy the driver must not look for the server's advertised address.
      MONGO_URL: `mongodb://${mongo.listen}/?directConnection=true`,
      ENDPUT_DATABASE_URL: `postgresql://postgres:postgres@${endputLink.listen}/endput`,
    });
    await seed(w, "SYSTEM1", SYSTEM1_ORDERS);
    await seed(w, "SYSTEM2", SYSTEM2_ORDERS);
    report.set({
      orders: SYSTEM1_ORDERS + SYSTEM2_ORDERS,
      faults: `consumer->log and ->endput: +200 ms, resets every 3 s, ${FAULT_MS / 1000} s`,
    });
    await Promise.all([publishAll(w, "SYSTEM1"), publishAll(w, "SYSTEM2")]);
    while ((await attemptsDone(w)) < 500) await sleep(100);

    const before = await attemptsDone(w);
    const links = [mongo, endputLink];
    for (const l of links) await l.addToxic("latency", { type: "latency", attributes: { latency: 200, jitter: 0 } });
    const started = Date.now();
    let resets = 0;
    while (Date.now() - started < FAULT_MS) {
      await sleep(2_500);
      // Every connection that carries data either way while the toxics are there is reset.
      for (const l of links) {
        await l.addToxic("reset-down", { type: "reset_peer", attributes: { timeout: 0 } });
        await l.addToxic("reset-up", { type: "reset_peer", stream: "upstream", attributes: { timeout: 0 } });
      }
      await sleep(500);
      for (const l of links) {
        await l.removeToxic("reset-down");
        await l.removeToxic("reset-up");
      }
      resets++;
    }
    for (const l of links) await l.removeToxic("latency");
    const healedAt = await attemptsDone(w);
    const duringFault = healedAt - before;
    const progressMs = await timeToProgress(w, healedAt, PROGRESS);
    report.detail("recovery", { resets, attemptsDuringFault: duringFault, progressMs });
    report.note(
      `${resets} reset rounds on both links under 200 ms latency: ${duringFault} attempts completed during the ` +
        `${FAULT_MS / 1000} s; ${PROGRESS} more done ${progressMs} ms after the links healed`,
    );
    expect(consumer.alive()).toBe(true);
    await report.time("drain", () => waitDrained(w));
    expect(consumer.alive()).toBe(true);
    await expectInvariantHolds(w, report);
    report.pass();
  });

  it("9b: the consumer reconnects by itself after a 10 s partition from the broker", async () => {
    const report = startReport("9b", "network: consumer-broker partition");
    const PARTITION_MS = 10_000;
    const amqpLink = await toxiproxy.link("s9b-amqp", `127.0.0.1:${PORTS.amqp}`);
    world = await createWorld("s9b");
    const w = world;
    await w.startGateway();
    const consumer = await w.startConsumer({ AMQP_URL: `amqp://guest:guest@${amqpLink.listen}` });
    await seed(w, "SYSTEM1", SYSTEM1_ORDERS);
    await seed(w, "SYSTEM2", SYSTEM2_ORDERS);
    report.set({ orders: SYSTEM1_ORDERS + SYSTEM2_ORDERS, faults: `consumer->broker down ${PARTITION_MS / 1000} s` });
    await Promise.all([publishAll(w, "SYSTEM1"), publishAll(w, "SYSTEM2")]);
    while ((await attemptsDone(w)) < 500) await sleep(100);

    const cutAt = Date.now();
    await amqpLink.setEnabled(false);
    await sleep(1_000);
    const whileDown = await readiness(consumer);
    await sleep(PARTITION_MS - (Date.now() - cutAt));
    const healedAt = await attemptsDone(w);
    await amqpLink.setEnabled(true);
    const healed = Date.now();
    await waitCheck(consumer, "rabbitmq", 60_000);
    const consumingAfterMs = Date.now() - healed;
    const progressMs = await timeToProgress(w, healedAt, PROGRESS);
    report.detail("recovery", { readinessWhileDown: whileDown, consumingAfterMs, progressMs });
    report.note(
      `consumer consuming again ${consumingAfterMs} ms after the link came back; ${PROGRESS} more attempts done after ${progressMs} ms`,
    );
    expect(whileDown.failing).toContain("rabbitmq");
    expect(consumer.alive()).toBe(true);
    await report.time("drain", () => waitDrained(w));
    await expectInvariantHolds(w, report);
    report.pass();
  });

  it("9c: publishPending stops at the confirmed cursor when the gateway is cut from the broker, and resumes", async () => {
    const report = startReport("9c", "network: gateway-broker partition mid-publish");
    const ORDERS = 8_000;
    const PARTITION_MS = 5_000;
    const amqpLink = await toxiproxy.link("s9c-amqp", `127.0.0.1:${PORTS.amqp}`);
    world = await createWorld("s9c");
    const w = world;
    const gateway = await w.startGateway({ AMQP_URL: `amqp://guest:guest@${amqpLink.listen}`, PUBLISH_BATCH_SIZE: "500" });
    const consumer = await w.startConsumer();
    await seed(w, "SYSTEM1", ORDERS);
    report.set({ orders: ORDERS, faults: `gateway->broker down ${PARTITION_MS / 1000} s mid-publishPending` });

    const inFlight = gqlOn(w, PUBLISH, { system: "SYSTEM1" });
    while ((await w.cursor("SYSTEM1")) < 500) await sleep(10);
    await amqpLink.setEnabled(false);
    const cutAt = Date.now();
    const cursorAtCut = await w.cursor("SYSTEM1");
    const answer = await inFlight;
    expect(answer.errors?.[0]?.extensions?.code).toBe("DEPENDENCY_UNAVAILABLE");
    expect(cursorAtCut).toBeLessThan(ORDERS);
    // While cut off, publishing is refused and the cursor does not move.
    await sleep(1_000);
    const refused = await gqlOn(w, PUBLISH, { system: "SYSTEM1" });
    expect(refused.errors?.[0]?.extensions).toMatchObject({ code: "DEPENDENCY_UNAVAILABLE", dependency: "rabbitmq" });
    const cursorWhileDown = await w.cursor("SYSTEM1");
    await sleep(PARTITION_MS - (Date.now() - cutAt));
    expect(await w.cursor("SYSTEM1")).toBe(cursorWhileDown);
    await amqpLink.setEnabled(true);
    const healed = Date.now();
    const again = await publishRetrying(w, "SYSTEM1");
    const resumedAfterMs = Date.now() - healed;
    expect(again.result.fromId).toBe(cursorWhileDown + 1);
    expect(again.result).toMatchObject({ cursor: ORDERS, toId: ORDERS, published: ORDERS - cursorWhileDown });
    report.detail("recovery", {
      cursorAtCut,
      answer: answer.errors?.[0],
      refusedWhileReconnecting: again.refused.length,
      resumedAfterMs,
    });
    report.note(
      `cut at cursor ${cursorAtCut}: publishPending answered DEPENDENCY_UNAVAILABLE; after the link came back ` +
        `the retry published the remaining ${again.result.published}, done ${resumedAfterMs} ms later`,
    );
    await report.time("drain", () => waitDrained(w));
    expect([gateway.alive(), consumer.alive()]).toEqual([true, true]);
    await expectInvariantHolds(w, report);
    report.pass();
  });
});
