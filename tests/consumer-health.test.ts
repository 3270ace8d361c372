// The consumer's /metrics and /readyz, served the way consumer/src/main.ts serves them.
import type { AddressInfo } from "node:net";

import { afterEach, describe, expect, it } from "vitest";

import { readConfig } from "../common/config.ts";
import { type Check, createHealthServer } from "../common/http-health.ts";
import { createRedis } from "../common/stores.ts";
import { createConsumerMetrics } from "../consumer/src/metrics.ts";
import { createTestEnv, type TestEnv } from "./support/env.ts";

let env: TestEnv | undefined;
afterEach(async () => {
  await env?.cleanup();
  env = undefined;
});

async function serve(checks: Check[], metrics = createConsumerMetrics()) {
  const server = createHealthServer({ checks, registry: metrics.registry });
  server.listen(0, "127.0.0.1");
  await new Promise((r) => server.once("listening", r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { base, close: () => new Promise((r) => server.close(r)) };
}

describe("consumer health and metrics", () => {
  it("exposes processing series whose values move", async () => {
    env = await createTestEnv({ RETRY_DELAY_MS: "100", MAX_ATTEMPTS: "2" });
    const metrics = createConsumerMetrics();
    const { consumer } = await env.startConsumer({}, metrics);
    const { base, close } = await serve(
      [{ name: "rabbitmq", check: async () => consumer.ready() || Promise.reject(new Error("not consuming")) }],
      metrics,
    );
    try {
      const before = await (await fetch(`${base}/metrics`)).text();
      // Every series is there from the start, at 0, for rate() and the alerting rules.
      const series = [...before.matchAll(/^tentativa_messages_processed_total\{.*\} (\S+)$/gm)].map((m) => Number(m[1]));
      expect(series.length).toBeGreaterThan(0);
      expect(series.every((v) => v === 0)).toBe(true);
      expect(before).toMatch(/^tentativa_messages_processed_total\{status="DEAD_LETTERED",system="SYSTEM1"\} 0$/m);
      await env.gql(`mutation { seedOrders(system: SYSTEM1, count: 20, securityCheckRatio: 0.5) { inserted } }`);
      await env.gql(`mutation { publishPending(system: SYSTEM1) { published } }`);
      await env.drained();
      const after = await (await fetch(`${base}/metrics`)).text();
      const value = (status: string) =>
        Number(
          new RegExp(`tentativa_messages_processed_total\\{status="${status}",system="SYSTEM1"\\} (\\d+)`).exec(after)?.[1] ?? 0,
        );
      expect(value("SUCCEEDED")).toBe(10);
      expect(value("DEAD_LETTERED")).toBe(10);
      expect(value("RETRY_SCHEDULED")).toBeGreaterThanOrEqual(10);
      expect(after).toMatch(/tentativa_batch_size_count [1-9]/);
      expect(after).toMatch(/tentativa_attempts_to_success_count 10/);
      expect((await fetch(`${base}/readyz`)).status).toBe(200);
    } finally {
      await close();
    }
  });

  it("turns not ready, naming the dependency, when one is down", async () => {
    env = await createTestEnv();
    const e = env;
    const downRedis = createRedis(readConfig({ REDIS_URL: "redis://127.0.0.1:1" }), "down");
    downRedis.on("error", () => undefined);
    const { base, close } = await serve([
      { name: "redis", check: () => downRedis.ping() },
      { name: "mongodb", check: () => e.mongo.db(e.config.mongo.database).command({ ping: 1 }) },
    ]);
    try {
      const res = await fetch(`${base}/readyz`);
      expect(res.status).toBe(503);
      const body = (await res.json()) as { ready: boolean; checks: { name: string; ok: boolean; error?: string }[] };
      expect(body.ready).toBe(false);
      expect(body.checks.find((c) => c.name === "redis")).toMatchObject({ ok: false });
      expect(body.checks.find((c) => c.name === "mongodb")).toMatchObject({ ok: true });
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
    } finally {
      downRedis.disconnect();
      await close();
    }
  });
});
