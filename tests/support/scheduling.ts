// How the kernel schedules a process: its niceness, its session, its session's scheduling group.
import { readFileSync } from "node:fs";

import { statFields } from "../../common/proc-stat.ts";

/** A process's nice value, field 19 of /proc/<pid>/stat. */
export const niceOf = (pid: number) => Number(statFields(pid)[16]);

/** A process's session id, field 6 of /proc/<pid>/stat. */
export const sessionOf = (pid: number) => Number(statFields(pid)[3]);

/** The scheduling group (Linux autogroup: one per session) a process is in, and that group's nice value. */
export function autogroupOf(pid: number): { group: string; nice: number } {
  const [group, , nice] = readFileSync(`/proc/${pid}/autogroup`, "utf8").trim().split(" ");
  return { group: group!, nice: Number(nice) };
}

/** How often a process's main thread has gone to sleep: each time, something then woke it (/proc/<pid>/status). */
export function sleepsOf(pid: number): number {
  const m = /^voluntary_ctxt_switches:\s+(\d+)$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  if (!m) throw new Error(`/proc/${pid}/status has no voluntary_ctxt_switches`);
  return Number(m[1]);
}

/** What a thread did over some span, in ms (Linux /proc/<pid>/schedstat). */
export interface ThreadTimes {
  runMs: number;
  waitMs: number;
}

/**
 * A process's main thread's total time on a CPU and waiting on a run queue for one, in ms;
 * undefined where the kernel does not keep it.
 */
export function threadTimes(pid: number | "self"): ThreadTimes | undefined {
  try {
    const [run, wait] = readFileSync(`/proc/${pid}/schedstat`, "utf8").trim().split(/\s+/).map(Number);
    return run === undefined || wait === undefined ? undefined : { runMs: run / 1e6, waitMs: wait / 1e6 };
  } catch {
    return undefined;
  }
}

/** What the thread did between two readings. */
export function between(before: ThreadTimes | undefined, after: ThreadTimes | undefined): ThreadTimes | undefined {
  const r = (ms: number) => Math.round(ms * 10) / 10;
  return before && after ? { runMs: r(after.runMs - before.runMs), waitMs: r(after.waitMs - before.waitMs) } : undefined;
}
