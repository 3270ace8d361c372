// The shipped gateway and consumer as child processes, for the tests, the fault
// suite and the bench alike: the world's settings in their environment (through
// childEnvironment, as a deployment passes them), their output in a log file,
// readiness awaited over HTTP, and stopped with SIGTERM (then SIGKILL) or killed.
// Only pids started here are ever signalled.
import { type ChildProcess, spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { childEnvironment } from "../../../common/config.ts";
import { sleep } from "../../../common/errors.ts";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");

export type Kind = "gateway" | "consumer";

export const ENTRY: Record<Kind, string> = { gateway: "gateway/src/main.ts", consumer: "consumer/src/main.ts" };

/**
 * How each process is launched in production: scripts/start.sh, npm run gateway|consumer, the
 * Dockerfile and compose use the same flags (the launch recipe tests in tests/compose.test.ts).
 * The gateway's heap limits and malloc arenas keep it under 200 MB while it publishes
 * (BENCHMARKS.md, gateway memory while publishing).
 */
export const LAUNCH: Record<Kind, { nodeArgs: readonly string[]; env: Record<string, string>; ownSession: boolean }> = {
  gateway: {
    nodeArgs: ["--max-semi-space-size=12", "--max-old-space-size=128", "--import", "./common/tracing-preload.ts"],
    env: { MALLOC_ARENA_MAX: "2" },
    // A session of its own, whose scheduling group GATEWAY_NICE raises.
    ownSession: true,
  },
  consumer: { nodeArgs: ["--import", "./common/tracing-preload.ts"], env: {}, ownSession: false },
};

export interface LaunchOptions {
  kind: Kind;
  /** Names the log file, `<logDir>/<name>.log`. */
  name: string;
  settings: Record<string, string | undefined>;
  logDir: string;
  /** The HTTP port; GATEWAY_PORT or CONSUMER_PORT is set to it. Default: a free one. */
  port?: number;
  /** Node's own flags before the entry script; default LAUNCH[kind].nodeArgs, as production runs it. */
  nodeArgs?: readonly string[];
  /**
   * When the process counts as started: a path that must answer 200 (default `/readyz`),
   * a predicate, or false not to wait at all.
   */
  ready?: string | ((child: Child) => Promise<boolean>) | false;
  timeoutMs?: number;
  /**
   * Starts it in a session of its own (setsid), as a service manager does, rather than in the
   * caller's. It then no longer gets the signals a terminal sends the caller's process group.
   * Default LAUNCH[kind].ownSession, as make start runs it.
   */
  ownSession?: boolean;
  /** Called with the pid right after the spawn, and again when the process has exited. */
  onSpawn?(pid: number): void;
  onExit?(pid: number): void;
}

export interface Child {
  kind: Kind;
  name: string;
  pid: number;
  port: number;
  url: string;
  logFile: string;
  /** Resolves with the exit code (or the signal name) when the process ends. */
  exited: Promise<number | string | null>;
  alive(): boolean;
  /** How it ended, e.g. "signal SIGTERM" or "code 1"; undefined while running. */
  exitReason(): string | undefined;
  /** Everything the process has written so far (stdout and stderr). */
  output(): string;
  /** Its JSON log lines. */
  logs(): { msg: string; [key: string]: unknown }[];
  signal(name: NodeJS.Signals): void;
  /** SIGKILL, then waits for the exit. */
  kill(): Promise<void>;
  /** SIGTERM (graceful), SIGKILL after `graceMs`. */
  stop(graceMs?: number): Promise<void>;
}

const live = new Set<ChildProcess>();
// A test worker or bench driver that exits must not leave children behind.
process.once("exit", killChildren);

/** Last resort on an aborted run: SIGKILL to every child started here that is still running. */
export function killChildren(): void {
  for (const c of live) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
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

export async function launch(opts: LaunchOptions): Promise<Child> {
  const port = opts.port ?? (await freePort());
  fs.mkdirSync(opts.logDir, { recursive: true });
  const logFile = path.join(opts.logDir, `${opts.name}.log`);
  const fd = fs.openSync(logFile, "a");
  fs.writeSync(fd, `=== ${new Date().toISOString()} start ${opts.kind} ${opts.name}\n`);
  const portKey = opts.kind === "gateway" ? "GATEWAY_PORT" : "CONSUMER_PORT";
  const nodeArgs = opts.nodeArgs ?? LAUNCH[opts.kind].nodeArgs;
  const proc = spawn(process.execPath, [...nodeArgs, ENTRY[opts.kind]], {
    cwd: ROOT,
    env: childEnvironment({ ...LAUNCH[opts.kind].env, ...opts.settings, [portKey]: String(port) }),
    stdio: ["ignore", fd, fd],
    detached: opts.ownSession ?? LAUNCH[opts.kind].ownSession,
  });
  fs.closeSync(fd);
  live.add(proc);
  const pid = proc.pid!;
  opts.onSpawn?.(pid);
  let stopping = false;
  let reason: string | undefined;
  const exited = new Promise<number | string | null>((resolve) => {
    proc.once("exit", (code, signal) => {
      live.delete(proc);
      reason = `${signal ? `signal ${signal}` : `code ${code}`}${stopping ? "" : ", not sent by the harness"}`;
      fs.appendFileSync(logFile, `=== ${new Date().toISOString()} exit code=${code} signal=${signal}\n`);
      opts.onExit?.(pid);
      resolve(code ?? signal);
    });
  });
  const alive = () => proc.exitCode === null && proc.signalCode === null;
  const output = () => (fs.existsSync(logFile) ? fs.readFileSync(logFile, "utf8") : "");
  const child: Child = {
    kind: opts.kind,
    name: opts.name,
    pid,
    port,
    url: `http://127.0.0.1:${port}`,
    logFile,
    exited,
    alive,
    exitReason: () => reason,
    output,
    logs: () =>
      output()
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as { msg: string }),
    signal: (name) => void (alive() && proc.kill(name)),
    async kill() {
      stopping = true;
      if (alive()) proc.kill("SIGKILL");
      await exited;
    },
    async stop(graceMs = 15_000) {
      if (!alive()) return;
      stopping = true;
      proc.kill("SIGTERM");
      const timer = setTimeout(() => alive() && proc.kill("SIGKILL"), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
  if (opts.ready !== false) await waitStarted(child, opts.ready ?? "/readyz", opts.timeoutMs ?? 90_000);
  return child;
}

/** Polls until `ready` holds; kills the process and fails with its log when it exits or times out. */
async function waitStarted(child: Child, ready: string | ((child: Child) => Promise<boolean>), timeoutMs: number) {
  const check =
    typeof ready === "function"
      ? ready
      : async (c: Child) => (await fetch(`${c.url}${ready}`, { signal: AbortSignal.timeout(3000) })).status === 200;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!child.alive())
      throw new Error(`${child.name} exited (${child.exitReason()}) before it was ready:\n${tail(child.logFile)}`);
    if (await check(child).catch(() => false)) return;
    if (Date.now() > deadline) {
      await child.kill();
      throw new Error(`${child.name} was not ready within ${timeoutMs} ms:\n${tail(child.logFile)}`);
    }
    await sleep(100);
  }
}

/** The process's /readyz answer: the HTTP status and each failing dependency check. */
export async function readiness(child: Child): Promise<{ status: number; failing: string[] }> {
  const res = await fetch(`${child.url}/readyz`, { signal: AbortSignal.timeout(5000) });
  const body = (await res.json()) as { checks: { name: string; ok: boolean }[] };
  return { status: res.status, failing: body.checks.filter((c) => !c.ok).map((c) => c.name) };
}
