// Scenario 4: the attempt-log server stops for ~10 s, then the endput database
// refuses connections for ~10 s. The consumer holds its batch (no ack while a
// store is down), recovers by itself, and the invariant holds.
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";

import { ENDPUT_DATABASE, services, URLS } from "./support/fault-services.ts";
import { checkInvariant, waitDrained } from "./support/invariant.ts";
import { attemptsDone, publishAll, seed, sleep } from "./support/ops.ts";
import { readiness } from "./support/processes.ts";
import { startReport } from "./support/report.ts";
import { createWorld, type World } from "./support/world.ts";

const PER_SYSTEM = 5_000;
const OUTAGE_MS = 10_000;
// Batches that passed the failing step before the outage may still finish in its first moments.
const SETTLE_MS = 3_000;

let world: World | undefined;
let blocked = false;

async function admin<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: URLS.admin });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

async function blockEndput(): Promise<number> {
  blocked = true;
  return admin(async (c) => {
    await c.query(`alter database ${ENDPUT_DATABASE} allow_connections false`);
    const r = await c.query(`select pg_terminate_backend(pid) from pg_stat_activity where datname = $1`, [ENDPUT_DATABASE]);
    return r.rowCount ?? 0;
  });
}

async function unblockEndput(): Promise<void> {
  await admin((c) => c.query(`alter database ${ENDPUT_DATABASE} allow_connections true`));
  blocked = false;
}

afterAll(async () => {
  if (blocked) await unblockEndput();
  await world?.cleanup();
});

/** Holds a store down for OUTAGE_MS; returns the attempt counts seen SETTLE_MS in and at the end. */
async function outage(
  w: World,
  consumerPort: Parameters<typeof readiness>[0],
  down: () => Promise<unknown>,
  up: () => Promise<unknown>,
) {
  const started = Date.now();
  await down();
  await sleep(SETTLE_MS);
  const settled = await attemptsDone(w);
  const ready = await readiness(consumerPort);
  await sleep(Math.max(0, OUTAGE_MS - (Date.now() - started)));
  const atEnd = await attemptsDone(w);
  await up();
  const downMs = Date.now() - started;
  // Recovery: attempts complete again.
  const recoveredAt = Date.now();
  while ((await attemptsDone(w)) === atEnd) {
    if (Date.now() - recoveredAt > 60_000) throw new Error("the consumer did not resume within 60 s of the store coming back");
    await sleep(100);
  }
  return { downMs, settled, atEnd, resumedAfterMs: Date.now() - recoveredAt, readyzWhileDown: ready };
}

describe("4. store outages", () => {
  it("holds batches while the log server or the endput database is down and recovers", async () => {
    const report = startReport("4", "store outages");
    world = await createWorld("s4");
    const w = world;
    await w.startGateway();
    const consumer = await w.startConsumer();
    await seed(w, "SYSTEM1", PER_SYSTEM);
    await seed(w, "SYSTEM2", PER_SYSTEM);
    report.set({ orders: 2 * PER_SYSTEM, faults: `mongo down ${OUTAGE_MS / 1000}s, endput blocked ${OUTAGE_MS / 1000}s` });
    await Promise.all([publishAll(w, "SYSTEM1"), publishAll(w, "SYSTEM2")]);
    while ((await attemptsDone(w)) < 3_000) await sleep(100);

    // The Mongo-compatible server stops: no batch can complete, so no attempt is counted.
    const mongo = await outage(
      w,
      consumer,
      () => services("stop", "mongo"),
      () => services("start", "mongo"),
    );
    report.detail("mongoOutage", mongo);
    expect(consumer.alive()).toBe(true);

    await sleep(1_500);
    // The endput database refuses connections and its sessions are terminated.
    const endput = await outage(w, consumer, blockEndput, unblockEndput);
    report.detail("endputOutage", endput);
    expect(consumer.alive()).toBe(true);

    await report.time("drain", () => waitDrained(w));
    expect(consumer.alive()).toBe(true);
    const result = await report.time("invariant", () => checkInvariant(w));
    report.invariant(result);
    // Held means held: no attempt completes (is acked) while a store it writes to is down.
    const held = {
      attemptsCompletedWhileLogDown: mongo.atEnd - mongo.settled,
      attemptsCompletedWhileEndputDown: endput.atEnd - endput.settled,
      readinessWhileLogDown: mongo.readyzWhileDown.failing.includes("mongodb"),
      readinessWhileEndputDown: endput.readyzWhileDown.failing.includes("postgresql"),
    };
    if (held.attemptsCompletedWhileLogDown > 0)
      report.set({
        problems: [...report.row.problems, `${held.attemptsCompletedWhileLogDown} attempts acked while the log server was down`],
      });
    if (held.attemptsCompletedWhileEndputDown > 0)
      report.set({
        problems: [...report.row.problems, `${held.attemptsCompletedWhileEndputDown} attempts acked while endput was down`],
      });
    expect(held).toEqual({
      attemptsCompletedWhileLogDown: 0,
      attemptsCompletedWhileEndputDown: 0,
      readinessWhileLogDown: true,
      readinessWhileEndputDown: true,
    });
    expect(result.problems).toEqual([]);
    expect(result.lost).toBe(0);
    expect(result.duplicated).toBe(0);
    report.pass();
  });
});
