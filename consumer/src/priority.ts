// The consumer yields the CPU to the gateway. Both are busy while a backlog drains, and on a
// host they share (with the stores) a request to the gateway would otherwise wait behind
// batch work that is not in a hurry (scenario 6b: 2-6 of 1,200 refusals over 100 ms per run at
// equal priority, 0-3 with the consumer at niceness 10).
// Set before any helper thread starts, so the libuv pool's threads inherit it.
//
// Where Linux groups processes by session for scheduling (autogroup, on by default), a niceness
// only ranks a process against the others of its own session: a consumer started as a service
// of its own (systemd, a second terminal) would compete with the gateway at full weight whatever
// its niceness. Such a consumer leads its session, so it also lowers its session's group.
import fs from "node:fs";
import os from "node:os";

import { errorMessage } from "../../common/errors.ts";
import type { Logger } from "../../common/logger.ts";
import { statFields } from "../../common/proc-stat.ts";

/** Where the kernel keeps this process's scheduling group and that group's niceness. */
const AUTOGROUP_FILE = "/proc/self/autogroup";

/** Lowers this process's CPU priority to `nice` (0 leaves it as started); a refusal is logged, not fatal. */
export function lowerPriority(nice: number, logger: Logger): void {
  if (nice === 0) return;
  try {
    os.setPriority(Math.max(os.getPriority(), nice));
    logger.info({ nice: os.getPriority() }, "CPU priority lowered below the gateway's");
  } catch (err) {
    logger.warn({ nice, err: errorMessage(err) }, "could not lower the CPU priority");
  }
  // Only the session's leader lowers its group: in a session it shares (make start's, with the
  // gateway) that would lower the gateway's priority with it.
  if (!leadsSession()) return;
  try {
    fs.writeFileSync(AUTOGROUP_FILE, String(nice));
    logger.info({ autogroup: fs.readFileSync(AUTOGROUP_FILE, "utf8").trim() }, "CPU priority of this session's group lowered");
  } catch (err) {
    // No autogroup in this kernel, or /proc read-only (a container, whose cgroup the scheduler uses instead).
    logger.debug({ err: errorMessage(err) }, "no session scheduling group to lower");
  }
}

/** Whether this process leads its session (its session id, field 6 of /proc/self/stat, is its pid). */
function leadsSession(): boolean {
  try {
    return Number(statFields("self")[3]) === process.pid;
  } catch {
    return false;
  }
}
