// The real gateway and consumer as child processes. Only the pids started here
// are ever signalled; every child's output goes to its own file under
// test-output/faults/logs/.
import { type ChildProcess, spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";

import { childEnvironment } from "../../../common/config.ts";
import { LOG_DIR, ROOT, URLS } from "./fault-services.ts";

export type Kind = "gateway" | "consumer";

export interface Child {
  kind: Kind;
  name: string;
  pid: number;
  port: number;
  logFile: string;
  /** Resolves with the exit code (or the signal name) when the process ends. */
  exited: Promise<number | string | null>;
  alive(): boolean;
  /** SIGKILL, then waits for the exit. */
  kill(): Promise<void>;
  /** SIGTERM (graceful), SIGKILL after `graceMs`. */
  stop(graceMs?: number): Promise<void>;
}

const started = new Set<ChildProcess>();
// A test worker that exits must not leave children behind.
process.once("exit", () => {
  for (const c of started) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
});

// A worker killed by a signal cannot run the handler above: every child's pid is also
// recorded here, and the next run's global setup ends those still alive.
export const PID_DIR = path.join(LOG_DIR, "..", "pids");

/** SIGKILLs children a previous, interrupted run left behind (only pids this suite recorded). */
export function killLeftovers(): number[] {
  if (!fs.existsSync(PID_DIR)) return [];
  const killed: number[] = [];
  for (const name of fs.readdirSync(PID_DIR)) {
    const pid = Number(name);
    try {
      // Still the process we started: a gateway or consumer pointed at the fault set's stores.
      const environ = fs.readFileSync(`/proc/${pid}/environ`, "utf8");
      const ours = environ.includes(`REDIS_URL=${URLS.redis}`) && environ.includes("AMQP_PREFIX=faults-");
      // Or the suite's Toxiproxy server (support/toxiproxy.ts).
      const toxiproxy = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("toxiproxy-server");
      if (ours || toxiproxy) {
        process.kill(pid, "SIGKILL");
        killed.push(pid);
      }
    } catch {
      // Gone already.
    }
    fs.rmSync(path.join(PID_DIR, name), { force: true });
  }
  return killed;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

export function tail(file: string, lines = 30): string {
  try {
    return fs.readFileSync(file, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}

export async function spawnService(opts: {
  kind: Kind;
  name: string;
  env: Record<string, string>;
  port: number;
  /** Wait only for these /readyz checks instead of all of them. */
  require?: string[];
}): Promise<Child> {
  fs.mkdirSync(LOG_DIR, { recursive: true });
  const logFile = path.join(LOG_DIR, `${opts.name}.log`);
  const fd = fs.openSync(logFile, "a");
  fs.writeSync(fd, `\n=== ${new Date().toISOString()} start ${opts.kind} ${opts.name}\n`);
  const entry = opts.kind === "gateway" ? "gateway/src/main.ts" : "consumer/src/main.ts";
  const child = spawn(process.execPath, [entry], {
    cwd: ROOT,
    env: childEnvironment(opts.env),
    stdio: ["ignore", fd, fd],
  });
  fs.closeSync(fd);
  started.add(child);
  fs.mkdirSync(PID_DIR, { recursive: true });
  fs.writeFileSync(path.join(PID_DIR, String(child.pid)), opts.name);
  const exited = new Promise<number | string | null>((resolve) => {
    child.once("exit", (code, signal) => {
      started.delete(child);
      fs.rmSync(path.join(PID_DIR, String(child.pid)), { force: true });
      fs.appendFileSync(logFile, `=== ${new Date().toISOString()} exit code=${code} signal=${signal}\n`);
      resolve(code ?? signal);
    });
  });
  const alive = () => child.exitCode === null && child.signalCode === null;
  const handle: Child = {
    kind: opts.kind,
    name: opts.name,
    pid: child.pid!,
    port: opts.port,
    logFile,
    exited,
    alive,
    async kill() {
      if (alive()) child.kill("SIGKILL");
      await exited;
    },
    async stop(graceMs = 15_000) {
      if (!alive()) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => alive() && child.kill("SIGKILL"), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
  if (opts.require) for (const check of opts.require) await waitCheck(handle, check, 90_000);
  else await waitReady(handle, 90_000);
  return handle;
}

/** Polls GET /readyz until it answers 200; fails early if the process exits. */
export async function waitReady(child: Child, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < deadline) {
    if (!child.alive()) throw new Error(`${child.name} exited before it was ready:\n${tail(child.logFile)}`);
    try {
      const res = await fetch(`http://127.0.0.1:${child.port}/readyz`, { signal: AbortSignal.timeout(3000) });
      last = `${res.status} ${await res.text()}`;
      if (res.status === 200) return;
    } catch (err) {
      last = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, 150));
  }
  throw new Error(`${child.name} not ready within ${timeoutMs} ms (last /readyz: ${last}):\n${tail(child.logFile)}`);
}

async function metricSum(child: Child, prefix: string): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${child.port}/metrics`, { signal: AbortSignal.timeout(5000) });
  const text = await res.text();
  let n = 0;
  for (const line of text.split("\n")) if (line.startsWith(prefix)) n += Number(line.split(" ").pop());
  return n;
}

/** Attempts a consumer process has processed, from its /metrics. */
export const processedBy = (child: Child) => metricSum(child, "tentativa_messages_processed_total{");

/** Deliveries a consumer recognised as already handled (acked without side effects). */
export const duplicatesSeen = (child: Child) => metricSum(child, "tentativa_duplicate_deliveries_total ");
export const resumedSeen = (child: Child) => metricSum(child, "tentativa_resumed_deliveries_total ");

/** The process's /readyz answer: the HTTP status and each dependency check. */
export async function readiness(child: Child): Promise<{ status: number; failing: string[] }> {
  const res = await fetch(`http://127.0.0.1:${child.port}/readyz`, { signal: AbortSignal.timeout(5000) });
  const body = (await res.json()) as { checks: { name: string; ok: boolean }[] };
  return { status: res.status, failing: body.checks.filter((c) => !c.ok).map((c) => c.name) };
}

/** Polls /readyz until one named dependency check passes (others may still fail). */
export async function waitCheck(child: Child, check: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    last = await readiness(child).catch((err: Error) => err.message);
    if (typeof last === "object" && !(last as { failing: string[] }).failing.includes(check)) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${child.name}: check ${check} still failing after ${timeoutMs} ms (${JSON.stringify(last)})`);
}
