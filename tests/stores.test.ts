// The store clients the processes open, against the real servers.
import pg from "pg";
import { afterEach, describe, expect, it } from "vitest";

import { readConfig, readConfigWith } from "../common/config.ts";
import { createEndputPool, createMongo } from "../common/stores.ts";
import { waitFor } from "./support/env.ts";

const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

describe("store clients", () => {
  it("opens at most MONGO_MAX_POOL_SIZE connections to the log server however many operations run at once", async () => {
    const config = readConfigWith({ MONGO_MAX_POOL_SIZE: "4", MONGO_DATABASE: `stores_${process.pid}_${Date.now()}` });
    const mongo = createMongo(config);
    closers.push(() => mongo.close());
    let open = 0;
    let peak = 0;
    mongo.on("connectionCreated", () => (peak = Math.max(peak, ++open)));
    mongo.on("connectionClosed", () => open--);
    const db = mongo.db(config.mongo.database);
    closers.push(() => db.dropDatabase());

    const results = await Promise.all(Array.from({ length: 200 }, (_, i) => db.collection("probe").find({ n: i }).toArray()));
    expect(results).toHaveLength(200);
    expect(peak).toBeGreaterThan(0);
    expect(peak).toBeLessThanOrEqual(4);
  });

  it("reports an endput connection that fails while idle and writes again through a new one", async () => {
    const config = readConfigWith({ ENDPUT_DATABASE_URL: readConfig().databases.endput.replace(/\/[^/]*$/, "/postgres") });
    const idleErrors: Error[] = [];
    const pool = createEndputPool(config, (err) => idleErrors.push(err));
    closers.push(() => pool.end());
    const { rows } = await pool.query<{ pid: number }>("select pg_backend_pid() as pid");
    expect(pool.idleCount).toBe(1);
    // What a restarted server does to the pool's idle connection; unhandled, the process would exit.
    const admin = new pg.Client({ connectionString: config.databases.endput });
    await admin.connect();
    closers.push(() => admin.end());
    await admin.query("select pg_terminate_backend($1)", [rows[0]!.pid]);
    await waitFor(
      async () => idleErrors.length,
      (n) => n === 1,
      5000,
    );
    expect(idleErrors[0]!.message).toMatch(/terminat/);
    expect((await pool.query<{ one: number }>("select 1 as one")).rows[0]!.one).toBe(1);
  });
});
