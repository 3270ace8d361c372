// The shipped processes as children, launched the way scripts/start.sh and the
// Dockerfile launch them (LAUNCH), each with the scenario's settings in its
// environment, its output in a log file, and stopped with SIGTERM so it shuts
// down (and writes its CPU profile) the way it does in production.
import { type ChildProcess, spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { childEnvironment } from "../common/config.ts";
import { sleep } from "./progress.ts";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

export type Script = "gateway/src/main.ts" | "consumer/src/main.ts";

/**
 * How each process is launched: keep it equal to scripts/start.sh and the Dockerfile. The gateway's
 * heap limits and malloc arenas are measured in BENCHMARKS.md (gateway memory while publishing).
 */
export const LAUNCH: Record<Script, { nodeArgs: readonly string[]; env: Record<string, string> }> = {
  "gateway/src/main.ts": {
    nodeArgs: ["--max-semi-space-size=8", "--max-old-space-size=128", "--import", "./common/tracing-preload.ts"],
    env: { MALLOC_ARENA_MAX: "2" },
  },
  "consumer/src/main.ts": { nodeArgs: ["--import", "./common/tracing-preload.ts"], env: {} },
};

export interface Child {
  name: string;
  pid: number;
  port: number;
  logFile: string;
  exited(): boolean;
  /** How it ended, e.g. "signal SIGTERM" or "code 1"; undefined while running. */
  exitReason(): string | undefined;
  stop(): Promise<void>;
}

const live = new Set<ChildProcess>();

export async function freePort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, "127.0.0.1");
  await new Promise((resolve) => server.once("listening", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function tail(file: string, lines = 15): string {
  try {
    return fs.readFileSync(file, "utf8").trim().split("\n").slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}

export async function startChild(opts: {
  name: string;
  script: Script;
  /** Replaces LAUNCH[script].nodeArgs (experiments). */
  nodeArgs?: readonly string[];
  env: Record<string, string | undefined>;
  port: number;
  logDir: string;
  /** Where --cpu-prof writes (profiling only). */
  cpuProfDir?: string;
  /** Resolves true once the process on `port` is ready. */
  ready: (port: number) => Promise<boolean>;
  timeoutMs?: number;
}): Promise<Child> {
  fs.mkdirSync(opts.logDir, { recursive: true });
  const logFile = path.join(opts.logDir, `${opts.name}.log`);
  const out = fs.openSync(logFile, "a");
  const args = [...(opts.nodeArgs ?? LAUNCH[opts.script].nodeArgs)];
  if (opts.cpuProfDir) {
    fs.mkdirSync(opts.cpuProfDir, { recursive: true });
    args.push("--cpu-prof", "--cpu-prof-dir", opts.cpuProfDir, "--cpu-prof-name", `${opts.name}.cpuprofile`);
  }
  args.push(opts.script);
  const child = spawn(process.execPath, args, {
    cwd: ROOT,
    env: childEnvironment({ ...LAUNCH[opts.script].env, ...opts.env }),
    stdio: ["ignore", out, out],
  });
  fs.closeSync(out);
  live.add(child);
  let exitCode: number | null | undefined;
  let exitReason: string | undefined;
  let stopping = false;
  const exit = new Promise<void>((resolve) =>
    child.once("exit", (code, signal) => {
      exitCode = code ?? (signal ? -1 : 0);
      exitReason = `${signal ? `signal ${signal}` : `code ${code}`}${stopping ? "" : ", not sent by the benchmark"}`;
      live.delete(child);
      resolve();
    }),
  );

  const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
  for (;;) {
    if (exitCode !== undefined) throw new Error(`${opts.name} exited with ${exitCode} while starting:\n${tail(logFile)}`);
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`${opts.name} was not ready within ${opts.timeoutMs ?? 60_000} ms:\n${tail(logFile)}`);
    }
    if (await opts.ready(opts.port).catch(() => false)) break;
    await sleep(100);
  }

  return {
    name: opts.name,
    pid: child.pid!,
    port: opts.port,
    logFile,
    exited: () => exitCode !== undefined,
    exitReason: () => exitReason,
    async stop() {
      if (exitCode !== undefined) return;
      stopping = true;
      child.kill("SIGTERM");
      const killed = await Promise.race([exit.then(() => false), sleep(30_000).then(() => true)]);
      if (killed) {
        child.kill("SIGKILL");
        await exit;
      }
    },
  };
}

/** Last resort on an aborted run: the children this process started, by pid. */
export function killChildren(): void {
  for (const c of live) c.kill("SIGKILL");
}

export interface MemoryStatus {
  rssMb: number;
  hwmMb: number;
}

export function memoryOf(pid: number): MemoryStatus {
  const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? NaN);
  return { rssMb: kb("VmRSS") / 1024, hwmMb: kb("VmHWM") / 1024 };
}

/** Resets VmHWM to the current RSS (Linux clear_refs "5"), so the peak covers only what follows. */
export function resetPeakRss(pid: number): boolean {
  try {
    fs.writeFileSync(`/proc/${pid}/clear_refs`, "5");
    return true;
  } catch {
    return false;
  }
}
