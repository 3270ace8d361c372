// scripts/start.sh for real: a process that dies is started again and the other keeps running.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { childEnvironment } from "../common/config.ts";
import { createTestEnv, type TestEnv, waitFor } from "./support/env.ts";
import { sessionOf } from "./support/scheduling.ts";
import { freePort } from "./support/world/launcher.ts";

const ROOT = path.resolve(import.meta.dirname, "..");

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

let env: TestEnv;
let start: ChildProcess | undefined;
let runDir = "";
let output = "";
let ports = { gateway: 0, consumer: 0 };

const pidOf = (name: "gateway" | "consumer") => {
  try {
    return Number(readFileSync(path.join(runDir, `${name}.pid`), "utf8"));
  } catch {
    return 0;
  }
};
const answers = async (port: number, p: string) => {
  try {
    return (await fetch(`http://127.0.0.1:${port}${p}`, { signal: AbortSignal.timeout(2000) })).status === 200;
  } catch {
    return false;
  }
};

beforeAll(async () => {
  env = await createTestEnv();
  runDir = mkdtempSync(path.join(os.tmpdir(), "tentativa-start-"));
  ports = { gateway: await freePort(), consumer: await freePort() };
  start = spawn("bash", ["scripts/start.sh"], {
    cwd: ROOT,
    // Its own process group, so that whatever is left can be ended at once at the end.
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
    env: childEnvironment({
      ...env.settings,
      START_RUN_DIR: runDir,
      GATEWAY_HOST: "127.0.0.1",
      GATEWAY_PORT: String(ports.gateway),
      CONSUMER_PORT: String(ports.consumer),
    }),
  });
  start.stdout!.on("data", (b: Buffer) => (output += b.toString()));
  start.stderr!.on("data", (b: Buffer) => (output += b.toString()));
}, 60_000);

afterAll(async () => {
  if (start?.pid && start.exitCode === null) {
    start.kill("SIGTERM");
    await waitFor(
      async () => start!.exitCode !== null || start!.signalCode !== null,
      (done) => done,
      30_000,
    ).catch(() => undefined);
    // Whatever is left of the group (nothing, when the script stopped cleanly).
    try {
      process.kill(-start.pid, "SIGKILL");
    } catch {
      // Already gone.
    }
  }
  rmSync(runDir, { recursive: true, force: true });
  await env?.cleanup();
}, 60_000);

describe("scripts/start.sh", () => {
  it("starts a killed gateway again while the consumer keeps its pid, and the other way round; stops both on SIGTERM", async () => {
    const up = async () => (await answers(ports.gateway, "/healthz")) && (await answers(ports.consumer, "/healthz"));
    await waitFor(up, (ok) => ok, 60_000);
    const gateway = pidOf("gateway");
    const consumer = pidOf("consumer");
    expect(alive(gateway) && alive(consumer)).toBe(true);
    // The pid files name the node processes; the gateway leads a session of its own (whose
    // scheduling group GATEWAY_NICE raises), the consumer stays in the script's.
    expect(readFileSync(`/proc/${gateway}/cmdline`, "utf8")).toContain("gateway/src/main.ts");
    expect(sessionOf(gateway)).toBe(gateway);
    expect(sessionOf(consumer)).toBe(sessionOf(start!.pid!));

    process.kill(gateway, "SIGKILL");
    await waitFor(
      async () => pidOf("gateway") !== gateway && (await answers(ports.gateway, "/healthz")),
      (ok) => ok,
      60_000,
    );
    expect(pidOf("consumer")).toBe(consumer);
    expect(alive(consumer)).toBe(true);
    expect(output).toMatch(/\[start\] gateway was killed by signal 9 after \d+ s; starting it again in 1 s/);

    const gateway2 = pidOf("gateway");
    process.kill(consumer, "SIGKILL");
    await waitFor(
      async () => pidOf("consumer") !== consumer && (await answers(ports.consumer, "/healthz")),
      (ok) => ok,
      60_000,
    );
    expect(pidOf("gateway")).toBe(gateway2);
    expect(alive(gateway2)).toBe(true);
    expect(output).toMatch(/\[start\] consumer was killed by signal 9/);

    // SIGTERM (as from Ctrl-C or `start.sh stop`) stops both for good.
    const consumer2 = pidOf("consumer");
    start!.kill("SIGTERM");
    await waitFor(
      async () => start!.exitCode !== null,
      (done) => done,
      30_000,
    );
    expect(alive(gateway2) || alive(consumer2)).toBe(false);
    expect(output).toMatch(/\[start\] stopped/);
  }, 240_000);
});
