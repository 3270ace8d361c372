// Where the machine's CPU went during a measurement: per service (found by the
// port it listens on), PostgreSQL backends split by the database they serve,
// our own children, and "other" (whatever else runs on this shared box). On 2
// cores this shows which process bounds a number, and how much load from
// other work the run had to share the machine with.
import { execFileSync } from "node:child_process";
import fs from "node:fs";

import type { Config } from "../common/config.ts";
import { statFields } from "../common/proc-stat.ts";
import { between, threadTimes } from "../tests/support/scheduling.ts";
import { sleep } from "./progress.ts";

const TICKS_PER_SECOND = 100;

export type Groups = Record<string, number>;

/** PostgreSQL children that exited in the window, from any database: autovacuum workers, parallel workers, closed connections. */
export const REAPED = "pg (exited backends, any database)";
export const OTHER = "other (not this run)";

export interface CpuSnapshot {
  at: number;
  /** CPU of the postmaster's children that exited (reaped): autovacuum workers, closed connections. */
  pgReaped: number;
  machineBusy: number;
  machineTotal: number;
  perPid: Map<number, { group: string; ticks: number }>;
}

export interface CpuUsage {
  seconds: number;
  /** CPU seconds per group. */
  groups: Groups;
  /** Busy share of the whole machine, 0..cores. */
  machineCores: number;
  /** Cores used per group (CPU seconds / wall seconds). */
  cores: Groups;
}

function pidListening(port: number): number | undefined {
  try {
    const out = execFileSync("ss", ["-ltnpH", `sport = :${port}`], { encoding: "utf8" });
    const m = /pid=(\d+)/.exec(out);
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

function readTicks(pid: number, reaped = false): number | undefined {
  try {
    const fields = statFields(pid);
    // utime + stime, or cutime + cstime: the CPU of children it has waited for
    return reaped ? Number(fields[13]) + Number(fields[14]) : Number(fields[11]) + Number(fields[12]);
  } catch {
    return undefined;
  }
}

function cmdline(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ").trim();
  } catch {
    return "";
  }
}

function childrenOf(ppid: number): number[] {
  const pids: number[] = [];
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (Number(statFields(Number(entry))[1]) === ppid) pids.push(Number(entry));
    } catch {
      // gone
    }
  }
  return pids;
}

function machineTicks(): { busy: number; total: number } {
  const line = fs.readFileSync("/proc/stat", "utf8").split("\n")[0]!;
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const total = v.reduce((a, b) => a + b, 0);
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  return { busy: total - idle, total };
}

export interface Services {
  rabbitmq?: number;
  mongo?: number;
  redis?: number;
  postmaster?: number;
  /** The PostgreSQL database FerretDB keeps its data in. */
  ferretdbDatabase?: string;
}

export function findServices(config: Config): Services {
  const port = (url: string, fallback: number) => Number(new URL(url).port || fallback);
  const mongo = pidListening(port(config.mongo.url, 27017));
  const ferretUrl = mongo ? /-postgresql-url\s+(\S+)/.exec(cmdline(mongo))?.[1] : undefined;
  return {
    rabbitmq: pidListening(port(config.broker.url, 5672)),
    mongo,
    redis: pidListening(port(config.redis.url, 6379)),
    postmaster: pidListening(port(config.databases.system1, 5432)),
    ferretdbDatabase: ferretUrl ? new URL(ferretUrl).pathname.slice(1) : undefined,
  };
}

/** Our own processes by group name; everything else is found from `services`. */
export function cpuSnapshot(services: Services, own: Record<string, number[]>, benchDbPrefix: string): CpuSnapshot {
  const perPid = new Map<number, { group: string; ticks: number }>();
  const add = (pid: number | undefined, group: string) => {
    if (pid === undefined) return;
    const ticks = readTicks(pid);
    if (ticks !== undefined) perPid.set(pid, { group, ticks });
  };
  add(process.pid, "bench driver");
  for (const [group, pids] of Object.entries(own)) for (const pid of pids) add(pid, group);
  add(services.rabbitmq, "rabbitmq");
  add(services.mongo, services.ferretdbDatabase ? "ferretdb" : "mongo");
  add(services.redis, "redis");
  if (services.postmaster) {
    add(services.postmaster, "pg background");
    for (const pid of childrenOf(services.postmaster)) {
      const cmd = cmdline(pid);
      const db = /^postgres: \S+ (\S+) /.exec(cmd)?.[1];
      const group =
        db === undefined
          ? "pg background"
          : db === services.ferretdbDatabase
            ? "pg (for ferretdb)"
            : db.startsWith(benchDbPrefix)
              ? "pg (sources+endput)"
              : "pg (other databases)";
      add(pid, group);
    }
  }
  const m = machineTicks();
  const pgReaped = services.postmaster ? (readTicks(services.postmaster, true) ?? 0) : 0;
  return { at: performance.now(), pgReaped, machineBusy: m.busy, machineTotal: m.total, perPid };
}

export function cpuBetween(a: CpuSnapshot, b: CpuSnapshot, cores: number): CpuUsage {
  const seconds = (b.at - a.at) / 1000;
  const groups: Groups = {};
  let attributed = 0;
  for (const [pid, end] of b.perPid) {
    const start = a.perPid.get(pid)?.ticks ?? 0;
    const s = Math.max(0, end.ticks - start) / TICKS_PER_SECOND;
    groups[end.group] = (groups[end.group] ?? 0) + s;
    attributed += s;
  }
  // Reaped children report their whole lifetime: leave out what the ones that were
  // already running at the start had used before it.
  let before = 0;
  for (const [pid, start] of a.perPid) if (start.group.startsWith("pg") && !b.perPid.has(pid)) before += start.ticks;
  const reaped = Math.max(0, b.pgReaped - a.pgReaped - before) / TICKS_PER_SECOND;
  if (reaped > 0) {
    groups[REAPED] = reaped;
    attributed += reaped;
  }
  const totalTicks = b.machineTotal - a.machineTotal;
  const machineCores = totalTicks > 0 ? ((b.machineBusy - a.machineBusy) / totalTicks) * cores : 0;
  groups[OTHER] = Math.max(0, machineCores * seconds - attributed);
  const cores_: Groups = {};
  for (const [g, s] of Object.entries(groups)) cores_[g] = seconds > 0 ? s / seconds : 0;
  return { seconds, groups, machineCores, cores: cores_ };
}

/** "ferretdb 0.62, consumer 0.41, ..." (cores, largest first). */
export function describeCores(u: CpuUsage, min = 0.03): string {
  return Object.entries(u.cores)
    .filter(([, c]) => c >= min)
    .sort((x, y) => y[1] - x[1])
    .map(([g, c]) => `${g} ${c.toFixed(2)}`)
    .join(", ");
}

const WAKES = 100;
const WAKE_SLEEP_MS = 10;

/**
 * What this machine charges a thread for sleeping and being woken: this process's main thread's
 * time on a CPU per 10 ms timer sleep, over 100 sleeps. The JavaScript run per wake is a few µs;
 * the rest is what the kernel and the hypervisor count to the thread for putting it to sleep
 * and waking it. A process that waits between small pieces of work (a gateway lookup waiting on
 * its store) pays it on each; a saturated one seldom sleeps. Undefined where the kernel keeps no
 * schedstat.
 */
export async function wakeCostUs(): Promise<number | undefined> {
  const before = threadTimes("self");
  for (let i = 0; i < WAKES; i++) await sleep(WAKE_SLEEP_MS);
  const spent = between(before, threadTimes("self"));
  return spent ? (spent.runMs * 1000) / WAKES : undefined;
}
