// The real gateway and consumer as child processes of a fault scenario, started by
// the one launcher (tests/support/world/launcher.ts) with every output under
// test-output/faults/logs/ and every pid recorded, plus the probes the scenarios
// read them with.
import fs from "node:fs";
import path from "node:path";

import { type Child, type Kind, launch, readiness } from "../../support/world/launcher.ts";
import { LOG_DIR, URLS } from "./fault-services.ts";

export { type Child, freePort, readiness, tail } from "../../support/world/launcher.ts";

// A worker killed by a signal cannot run the launcher's exit handler: every child's pid is also
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

/** The process with the scenario's settings; resolves once /readyz (or only the `require`d checks) pass. */
export function spawnService(opts: {
  kind: Kind;
  name: string;
  settings: Record<string, string>;
  port: number;
  /** Wait only for these /readyz checks instead of all of them. */
  require?: string[];
}): Promise<Child> {
  const { require } = opts;
  return launch({
    ...opts,
    logDir: LOG_DIR,
    ready: require
      ? async (c) => {
          const { failing } = await readiness(c);
          return require.every((check) => !failing.includes(check));
        }
      : "/readyz",
    timeoutMs: 90_000,
    onSpawn: (pid) => {
      fs.mkdirSync(PID_DIR, { recursive: true });
      fs.writeFileSync(path.join(PID_DIR, String(pid)), opts.name);
    },
    onExit: (pid) => fs.rmSync(path.join(PID_DIR, String(pid)), { force: true }),
  });
}

async function metricSum(child: Child, prefix: string): Promise<number> {
  const res = await fetch(`${child.url}/metrics`, { signal: AbortSignal.timeout(5000) });
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
