// The store clients the processes open, against the real servers.
import { afterEach, describe, expect, it } from "vitest";

import { readConfigWith } from "../common/config.ts";
import { createMongo } from "../common/stores.ts";

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
});
