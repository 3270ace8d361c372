// Scenario 8: a three-node RabbitMQ cluster, started once for the three cases.
// The topology (quorum queues) is declared through node 1, so node 1 leads the
// queues; the consumer starts on node 2 and the gateway on node 3, each knowing
// every node. Each case SIGKILLs one node (the Erlang VM, no shutdown) mid-run:
//   8a the node that leads the primary queue;
//   8b the node the consumer is connected to;
//   8c the node the gateway publishes through, during publishPending.
// The processes must carry on without a restart, the killed node comes back and
// rejoins, and the invariant holds.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";

import { assertTopology } from "../../common/topology.ts";
import { PUBLISH } from "../../gateway/client/operations.ts";
import { gqlOn } from "../typed-gql.ts";
import { CLUSTER_BROKER, connectedNode, queueLeader, startingOn, timeToProgress } from "./support/cluster.ts";
import { clusterServices, killClusterNode } from "./support/fault-services.ts";
import { expectInvariantHolds, waitDrained } from "./support/invariant.ts";
import { attemptsDone, publishAll, publishRetrying, seed, sleep } from "./support/ops.ts";
import { waitCheck } from "./support/processes.ts";
import { startReport } from "./support/report.ts";
import { createWorld, type EnvOverrides, type World } from "./support/world.ts";

const SYSTEM1_ORDERS = 3_000;
const SYSTEM2_ORDERS = 1_500;
// How many further attempts count as "processing again" after a kill.
const PROGRESS = 300;

let world: World | undefined;
let clusterStartMs = 0;

beforeAll(async () => {
  const t0 = Date.now();
  await clusterServices("start");
  clusterStartMs = Date.now() - t0;
}, 400_000);

afterEach(async () => {
  await world?.cleanup();
  world = undefined;
  // A case that failed before bringing its node back leaves the next one a full cluster all the same.
  await clusterServices("start");
}, 400_000);

afterAll(async () => {
  await clusterServices("stop");
}, 120_000);

/** A world on the cluster: topology declared through node 1, consumer on node 2, gateway on node 3. */
async function clusterWorld(scenario: string, overrides: EnvOverrides = {}) {
  world = await createWorld(scenario, overrides, CLUSTER_BROKER);
  const w = world;
  await w.withChannel((ch) => assertTopology(ch, w.topology, w.config));
  const gateway = await w.startGateway({ AMQP_URL: startingOn(3) });
  const consumer = await w.startConsumer({ AMQP_URL: startingOn(2) });
  const placement = {
    leader: await queueLeader(w, w.topology.primary),
    consumer: await connectedNode(w, consumer),
    gateway: await connectedNode(w, gateway),
  };
  return { w, gateway, consumer, placement };
}

describe("8. RabbitMQ cluster", () => {
  it("8a: carries on when the node leading the primary queue is SIGKILLed", async () => {
    const report = startReport("8a", "cluster: kill the queue leader");
    report.detail("clusterStartMs", clusterStartMs);
    const { w, gateway, consumer, placement } = await clusterWorld("s8a");
    report.detail("placement", placement);
    expect(placement).toEqual({ leader: 1, consumer: 2, gateway: 3 });
    await seed(w, "SYSTEM1", SYSTEM1_ORDERS);
    await seed(w, "SYSTEM2", SYSTEM2_ORDERS);
    report.set({ orders: SYSTEM1_ORDERS + SYSTEM2_ORDERS, faults: "SIGKILL the primary queue's leader node mid-run" });
    expect(await publishAll(w, "SYSTEM1")).toBe(SYSTEM1_ORDERS);
    while ((await attemptsDone(w)) < 1_000) await sleep(100);

    const atKill = await attemptsDone(w);
    const killedAt = Date.now();
    killClusterNode(placement.leader);
    // A new leader is elected among the two live nodes; the consumer on node 2 keeps going.
    const progressMs = await timeToProgress(w, atKill, PROGRESS);
    const newLeader = await queueLeader(w, w.topology.primary, placement.leader);
    // The gateway (node 3) publishes through the new leader.
    const published = await publishRetrying(w, "SYSTEM2");
    const publishedAfterMs = Date.now() - killedAt;
    expect(published.result.published).toBe(SYSTEM2_ORDERS);
    expect(newLeader).not.toBe(placement.leader);

    const restartMs = await report.time("restartKilledNode", async () => {
      const t0 = Date.now();
      await clusterServices("start");
      return Date.now() - t0;
    });
    report.detail("recovery", {
      progressMs,
      newLeader,
      publishRefusals: published.refused.length,
      publishedAfterMs,
      restartMs,
    });
    report.note(
      `leader rq${placement.leader} killed: ${PROGRESS} more attempts done ${progressMs} ms later (new leader rq${newLeader}); ` +
        `the next publish done ${publishedAfterMs} ms after the kill; the node rejoined in ${Math.round(restartMs / 1000)} s`,
    );
    await report.time("drain", () => waitDrained(w, { timeoutMs: 300_000 }));
    expect([gateway.alive(), consumer.alive()]).toEqual([true, true]);
    await expectInvariantHolds(w, report);
    report.pass();
  });

  it("8b: the consumer moves to another node when its node is SIGKILLed", async () => {
    const report = startReport("8b", "cluster: kill the consumer's node");
    const { w, gateway, consumer, placement } = await clusterWorld("s8b");
    report.detail("placement", placement);
    expect(placement).toEqual({ leader: 1, consumer: 2, gateway: 3 });
    await seed(w, "SYSTEM1", SYSTEM1_ORDERS);
    await seed(w, "SYSTEM2", SYSTEM2_ORDERS);
    report.set({ orders: SYSTEM1_ORDERS + SYSTEM2_ORDERS, faults: "SIGKILL the consumer's node mid-run" });
    expect(await publishAll(w, "SYSTEM1")).toBe(SYSTEM1_ORDERS);
    expect(await publishAll(w, "SYSTEM2")).toBe(SYSTEM2_ORDERS);
    while ((await attemptsDone(w)) < 1_000) await sleep(100);

    const atKill = await attemptsDone(w);
    const killedAt = Date.now();
    killClusterNode(placement.consumer);
    // The same process reconnects (to node 3, the next in its list) and consumes again.
    await waitCheck(consumer, "rabbitmq", 60_000);
    const consumingAfterMs = Date.now() - killedAt;
    const progressMs = await timeToProgress(w, atKill, PROGRESS);
    const nowOn = await connectedNode(w, consumer);
    expect(nowOn).not.toBe(placement.consumer);

    const restartMs = await report.time("restartKilledNode", async () => {
      const t0 = Date.now();
      await clusterServices("start");
      return Date.now() - t0;
    });
    report.detail("recovery", { consumingAfterMs, progressMs, consumerNowOn: nowOn, restartMs });
    report.note(
      `consumer's node rq${placement.consumer} killed: consuming again on rq${nowOn} after ${consumingAfterMs} ms, ` +
        `${PROGRESS} more attempts done ${progressMs} ms after the kill`,
    );
    await report.time("drain", () => waitDrained(w, { timeoutMs: 300_000 }));
    expect([gateway.alive(), consumer.alive()]).toEqual([true, true]);
    await expectInvariantHolds(w, report);
    report.pass();
  });

  it("8c: publishPending resumes from the confirmed cursor when the gateway's node is SIGKILLed", async () => {
    const report = startReport("8c", "cluster: kill the gateway's node mid-publish");
    const ORDERS = 8_000;
    // Small publish batches: the cursor moves often, so the kill lands inside the run.
    const { w, gateway, consumer, placement } = await clusterWorld("s8c", { PUBLISH_BATCH_SIZE: "500" });
    report.detail("placement", placement);
    expect(placement).toEqual({ leader: 1, consumer: 2, gateway: 3 });
    await seed(w, "SYSTEM1", ORDERS);
    report.set({ orders: ORDERS, faults: "SIGKILL the gateway's node during publishPending" });

    const inFlight = gqlOn(w, PUBLISH, { system: "SYSTEM1" });
    while ((await w.cursor("SYSTEM1")) < 500) await sleep(10);
    const killedAt = Date.now();
    killClusterNode(placement.gateway);
    const cursorAtKill = await w.cursor("SYSTEM1");
    const answer = await inFlight;
    report.detail("kill", { cursorAtKill, answer: answer.errors?.[0] ?? answer.data });
    expect(cursorAtKill).toBeLessThan(ORDERS);
    // Messages the broker had not confirmed are not behind the cursor: the publish reports the broker.
    expect(answer.errors?.[0]?.extensions?.code).toBe("DEPENDENCY_UNAVAILABLE");

    // The same gateway process reconnects to the next node and publishes the rest.
    const again = await publishRetrying(w, "SYSTEM1");
    const resumedAfterMs = Date.now() - killedAt;
    expect(again.result.fromId).not.toBeNull();
    const cursorBefore = again.result.fromId! - 1;
    expect(cursorBefore).toBeGreaterThanOrEqual(cursorAtKill);
    expect(again.result).toMatchObject({ cursor: ORDERS, toId: ORDERS });
    expect(again.result.published).toBe(ORDERS - cursorBefore);
    const nowOn = await connectedNode(w, gateway);
    expect(nowOn).not.toBe(placement.gateway);

    const restartMs = await report.time("restartKilledNode", async () => {
      const t0 = Date.now();
      await clusterServices("start");
      return Date.now() - t0;
    });
    report.detail("recovery", {
      resumedAfterMs,
      refusedWhileReconnecting: again.refused.length,
      gatewayNowOn: nowOn,
      restartMs,
    });
    report.note(
      `gateway's node rq${placement.gateway} killed at cursor ${cursorAtKill}: publishPending answered ` +
        `DEPENDENCY_UNAVAILABLE, and the retry published the rest through rq${nowOn}, done ${resumedAfterMs} ms after the kill`,
    );
    await report.time("drain", () => waitDrained(w, { timeoutMs: 300_000 }));
    expect([gateway.alive(), consumer.alive()]).toEqual([true, true]);
    await expectInvariantHolds(w, report);
    report.pass();
  });
});
