// CPU priority on a host the gateway, the consumer and the stores share. While a backlog drains
// they all want the CPU; the gateway answers people and clients that wait, the consumer does
// batch work that is not in a hurry. So the consumer runs below the default priority
// (CONSUMER_NICE) and the gateway, where it is allowed to, above it (GATEWAY_NICE).
// Set before any helper thread starts, so the libuv pool's threads inherit it.
//
// Where Linux groups processes by session for scheduling (autogroup, on by default), a niceness
// only ranks a process against the others of its own session: every PostgreSQL backend (each is
// a session of its own) would compete with the gateway at full weight whatever its niceness. A
// process that leads its session (a systemd service, make start's gateway) therefore also sets
// its session's group to the same value.
import fs from "node:fs";
import os from "node:os";

import { errorMessage } from "./errors.ts";
import type { Logger } from "./logger.ts";
import { statFields } from "./proc-stat.ts";

/** Where the kernel keeps this process's scheduling group and that group's niceness. */
const AUTOGROUP_FILE = "/proc/self/autogroup";

/**
 * Moves this process's CPU niceness towards `nice` (0 leaves it as started; it is never moved the
 * other way, so `nice -n 15` on the command line still holds). Raising the priority (a negative
 * value) needs root or CAP_SYS_NICE; a refusal is logged, not fatal.
 */
export function setCpuPriority(nice: number, logger: Logger): void {
  if (nice === 0) return;
  const current = os.getPriority();
  const target = nice > 0 ? Math.max(current, nice) : Math.min(current, nice);
  try {
    os.setPriority(target);
    logger.info({ nice: os.getPriority() }, "CPU priority set");
  } catch (err) {
    const fields = { wanted: nice, nice: current, err: errorMessage(err) };
    // Expected wherever the process is not root: said once, without alarm.
    if (nice < 0) logger.info(fields, "could not raise the CPU priority (needs root or CAP_SYS_NICE)");
    else logger.warn(fields, "could not lower the CPU priority");
    return;
  }
  // Only the session's leader sets its group: in a session it shares (with the other process,
  // or the caller's shell) it would move the others' priority with its own.
  if (!leadsSession()) return;
  try {
    fs.writeFileSync(AUTOGROUP_FILE, String(target));
    logger.info({ autogroup: fs.readFileSync(AUTOGROUP_FILE, "utf8").trim() }, "CPU priority of this session's group set");
  } catch (err) {
    // No autogroup in this kernel, or /proc read-only (a container, whose cgroup the scheduler uses instead).
    logger.debug({ err: errorMessage(err) }, "no session scheduling group to set");
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
