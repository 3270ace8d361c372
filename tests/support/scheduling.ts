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
