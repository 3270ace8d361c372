// The log's lookups go through indexes on MongoDB. FerretDB (used where mongod is
// not installed) answers explain with its backend's plan: it can push top-level
// equality filters down to its PostgreSQL tables but does not use indexes for
// them, so there the test checks the pushdown the lookups were shaped for.
import type { Filter } from "mongodb";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { LogDocument } from "../common/attempt-log.ts";
import { createTestEnv, type TestEnv } from "./support/env.ts";

let env: TestEnv;
let ferret = false;

beforeAll(async () => {
  env = await createTestEnv();
  const info = await env.mongo.db("admin").command({ buildInfo: 1 });
  ferret = "ferretdbVersion" in info;
  await env.log.collection.insertMany(
    Array.from({ length: 50 }, (_, i) => ({
      messageId: `m-${i}`,
      round: 0,
      attempt: 1,
      status: "SUCCEEDED" as const,
      requiredAttempts: 1,
      maxAttempts: 5,
      system: "SYSTEM1" as const,
      orderId: i,
      source: { system: "SYSTEM1" as const, orderId: i, publishedAt: new Date() },
      order: { product: "x", price: "1.00", securityCheck: true },
      error: null,
      processedAt: new Date(),
      expiresAt: null,
      retained: false,
      durationMs: 1,
      consumerId: "t",
    })),
  );
});

afterAll(async () => {
  await env.cleanup();
});

const usesIndex = (plan: unknown) => JSON.stringify(plan).includes("IXSCAN");
const pushedDown = (plan: Record<string, unknown>) => plan.filterPushdown === true;

describe("attempt log lookups", () => {
  it.each<[string, Filter<LogDocument>]>([
    ["messageHistory", { messageId: "m-3" }],
    ["messages by status", { status: "SUCCEEDED" }],
    ["messages by system and order", { system: "SYSTEM1", orderId: 3 }],
  ])("%s avoid collection scans", async (_name, filter) => {
    const plan = (await env.log.collection.find(filter).explain()) as Record<string, unknown>;
    if (ferret) expect(pushedDown(plan)).toBe(true);
    else expect(usesIndex(plan)).toBe(true);
  });

  it("has the indexes the lookups need", async () => {
    const names = (await env.log.collection.indexes()).map((i) => i.name);
    expect(names).toEqual(expect.arrayContaining(["message_attempt", "system_order", "status_recent"]));
  });
});
