// A process's /proc/<pid>/stat (Linux), read past its command name: the name is in parentheses
// and may itself hold ") ", so the fields are taken after the last closing parenthesis.
import fs from "node:fs";

/**
 * The fields of /proc/<pid>/stat from the third (state) on: field n is at index n - 3 (ppid 1,
 * session 3, utime and stime 11 and 12, cutime and cstime 13 and 14, nice 16). Throws if the
 * process is gone.
 */
export function statFields(pid: number | "self"): string[] {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
}
