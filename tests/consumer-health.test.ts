// The consumer process's /healthz, /readyz and /metrics: consumer/src/main.ts itself, started
// as a child on this test's databases and names, probed over HTTP.
import { existsSync } from "node:fs";

import { afterEach, describe, expect, it } from "vitest";

import { graphql } from "../gateway/client/graphql.ts";
import { SEED } from "../gateway/client/operations.ts";
import { createTestEnv, type Overrides, type TestEnv, waitFor } from "./support/env.ts";
import { autogroupOf, niceOf } from "./support/scheduling.ts";
import { gqlOn } from "./typed-gql.ts";

let env: TestEnv | undefined;
afterEach(async () => {
  await env?.cleanup();
  env = undefined;
});

/** consumer/src/main.ts on a free port; resolves once its health server answers. */
async function startConsumerProcess(e: TestEnv, more: Overrides = {}, opts: { ownSession?: boolean } = {}) {
  const child = await e.launch(
    "consumer",
    { CONSUMER_ID: `health-${e.id}`, ...more },
    { ready: "/healthz", timeoutMs: 60_000, ...opts },
  );
  const status = (p: string) =>
    fetch(`${child.url}${p}`).then(
      (r) => r.status,
      () => 0,
    );
  return { base: child.url, status, output: child.output, pid: child.pid };
}

describe("consumer health and metrics", () => {
  it("runs below the gateway's CPU priority, as CONSUMER_NICE says", async () => {
    env = await createTestEnv();
    const e = env;
    expect(niceOf(process.pid)).toBe(0);
    const lowered = await startConsumerProcess(e);
    expect(niceOf(lowered.pid)).toBe(10);
    const equal = await startConsumerProcess(e, { CONSUMER_ID: `health-equal-${e.id}`, CONSUMER_NICE: "0" });
    expect(niceOf(equal.pid)).toBe(0);
  });

  it.runIf(existsSync("/proc/self/autogroup"))(
    "lowers its session's scheduling group when it runs in a session of its own, and never a group it shares",
    async () => {
      env = await createTestEnv();
      const e = env;
      const ours = autogroupOf(process.pid);
      // Started as a service is (setsid): alone in its group, whose weight it lowers, or a
      // niceness would rank it only against itself and it would compete with the gateway at full weight.
      const alone = await startConsumerProcess(e, { CONSUMER_ID: `health-alone-${e.id}` }, { ownSession: true });
      expect(autogroupOf(alone.pid).group).not.toBe(ours.group);
      expect(autogroupOf(alone.pid).nice).toBe(10);
      const equal = await startConsumerProcess(
        e,
        { CONSUMER_ID: `health-alone0-${e.id}`, CONSUMER_NICE: "0" },
        { ownSession: true },
      );
      expect(autogroupOf(equal.pid).nice).toBe(0);
      // Started in this process's session (as make start runs it beside the gateway): only its own niceness.
      const shared = await startConsumerProcess(e, { CONSUMER_ID: `health-shared-${e.id}` });
      expect(autogroupOf(shared.pid)).toEqual(ours);
      expect(niceOf(shared.pid)).toBe(10);
    },
  );

  it("exposes processing series whose values move", async () => {
    env = await createTestEnv({ RETRY_DELAY_MS: "100", MAX_ATTEMPTS: "2" });
    const e = env;
    // The consumer holds each batch up to a second before it processes it: its deliveries sit
    // unacked while every queue already counts 0, and drained() must wait for them all the same.
    const { base, status, output } = await startConsumerProcess(e, { CONSUMER_BATCH_WAIT_MS: "1000" });
    // Ready once it consumes.
    await waitFor(
      () => status("/readyz"),
      (s) => s === 200,
      30_000,
    ).catch((err: Error) => {
      throw new Error(`${err.message}\n${output()}`);
    });
    const before = await (await fetch(`${base}/metrics`)).text();
    // Every series is there from the start, at 0, for rate() and the alerting rules.
    const series = [...before.matchAll(/^tentativa_messages_processed_total\{.*\} (\S+)$/gm)].map((m) => Number(m[1]));
    expect(series.length).toBeGreaterThan(0);
    expect(series.every((v) => v === 0)).toBe(true);
    expect(before).toMatch(/^tentativa_messages_processed_total\{status="DEAD_LETTERED",system="SYSTEM1"\} 0$/m);
    await gqlOn(e, SEED, { system: "SYSTEM1", count: 20, ratio: 0.5 });
    await gqlOn(
      e,
      graphql(`
        mutation {
          publishPending(system: SYSTEM1) {
            published
          }
        }
      `),
    );
    await e.drained();
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
    expect(await status("/readyz")).toBe(200);
  });

  it("turns not ready, naming the dependency, when one is down", async () => {
    env = await createTestEnv();
    const { base, status } = await startConsumerProcess(env, { REDIS_URL: "redis://127.0.0.1:1" });
    const res = await fetch(`${base}/readyz`);
    expect(res.status).toBe(503);
    const body = (await res.json()) as { ready: boolean; checks: { name: string; ok: boolean; error?: string }[] };
    expect(body.ready).toBe(false);
    expect(body.checks.map((c) => c.name).sort()).toEqual(["mongodb", "postgresql", "rabbitmq", "redis"]);
    expect(body.checks.find((c) => c.name === "redis")).toMatchObject({ ok: false });
    expect(body.checks.find((c) => c.name === "mongodb")).toMatchObject({ ok: true });
    expect(body.checks.find((c) => c.name === "postgresql")).toMatchObject({ ok: true });
    expect(await status("/healthz")).toBe(200);
  });
});
