// What an idle process costs the machine: each time its main thread sleeps, something wakes it
// again, and a wake costs a thread 120–270 µs of CPU on the development machine (BENCHMARKS.md).
// A gateway and a consumer with nothing to do must not wake on a timer of their own many times a
// second.
import { afterEach, describe, expect, it } from "vitest";

import { sleep } from "../common/errors.ts";
import { createTestEnv, type TestEnv } from "./support/env.ts";
import { sleepsOf } from "./support/scheduling.ts";

let env: TestEnv | undefined;
afterEach(async () => {
  await env?.cleanup();
  env = undefined;
});

/** Wakes per second of each pid's main thread over `ms`. */
async function wakesPerSecond(pids: number[], ms: number): Promise<number[]> {
  const before = pids.map(sleepsOf);
  await sleep(ms);
  return pids.map((pid, i) => ((sleepsOf(pid) - before[i]!) * 1000) / ms);
}

describe("idle processes", () => {
  it.runIf(process.platform === "linux")(
    "a gateway and a consumer with nothing to do wake fewer than 50 times a second",
    async () => {
      env = await createTestEnv();
      const e = env;
      const gateway = await e.launch("gateway", { GATEWAY_HOST: "127.0.0.1" }, { timeoutMs: 60_000 });
      const consumer = await e.launch("consumer", { CONSUMER_ID: `idle-${e.id}` }, { ready: "/healthz", timeoutMs: 60_000 });
      // Past their start-up: connections made, the first retention sweep and readiness checks done.
      await sleep(3_000);
      const [gatewayWakes, consumerWakes] = await wakesPerSecond([gateway.pid, consumer.pid], 5_000);
      // prom-client's event-loop delay histogram at its default 10 ms resolution alone woke each 100 times a second.
      const seen = `wakes per second: gateway ${gatewayWakes}, consumer ${consumerWakes}`;
      expect(gatewayWakes, seen).toBeLessThan(50);
      expect(consumerWakes, seen).toBeLessThan(50);
    },
  );
});
