// The shipped processes as children, started by the one launcher
// (tests/support/world/launcher.ts) the way scripts/start.sh and the Dockerfile
// launch them (LAUNCH), each with the scenario's settings in its environment, its
// output in a log file, and stopped with SIGTERM so it shuts down (and writes its
// CPU profile) the way it does in production.
import fs from "node:fs";

import { type Kind, LAUNCH, launch } from "../tests/support/world/launcher.ts";

export { freePort, killChildren, LAUNCH, ROOT } from "../tests/support/world/launcher.ts";

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

export async function startChild(opts: {
  name: string;
  kind: Kind;
  /** Replaces LAUNCH's node flags for the script (experiments). */
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
  const { kind } = opts;
  const args = [...(opts.nodeArgs ?? LAUNCH[kind].nodeArgs)];
  if (opts.cpuProfDir) {
    fs.mkdirSync(opts.cpuProfDir, { recursive: true });
    args.push("--cpu-prof", "--cpu-prof-dir", opts.cpuProfDir, "--cpu-prof-name", `${opts.name}.cpuprofile`);
  }
  const child = await launch({
    kind,
    name: opts.name,
    settings: opts.env,
    port: opts.port,
    logDir: opts.logDir,
    nodeArgs: args,
    ready: (c) => opts.ready(c.port),
    timeoutMs: opts.timeoutMs ?? 60_000,
  });
  return {
    name: child.name,
    pid: child.pid,
    port: child.port,
    logFile: child.logFile,
    exited: () => !child.alive(),
    exitReason: child.exitReason,
    stop: () => child.stop(30_000),
  };
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
