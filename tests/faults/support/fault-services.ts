// The fault suite's own set of backing services: a separate data folder and
// ports, so restarting or stopping them never touches the developer's services.
import { execFile } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { childEnvironment } from "../../../common/config.ts";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
export const OUTPUT_DIR = path.join(ROOT, "test-output", "faults");
export const LOG_DIR = path.join(OUTPUT_DIR, "logs");

export const PORTS = { postgres: 5532, redis: 6479, amqp: 5772, management: 15772, mongo: 27117 } as const;

const pgUrl = (db: string) => `postgresql://postgres:postgres@127.0.0.1:${PORTS.postgres}/${db}`;

export const URLS = {
  system1: pgUrl("system1"),
  system2: pgUrl("system2"),
  endput: pgUrl("endput"),
  admin: pgUrl("postgres"),
  redis: `redis://127.0.0.1:${PORTS.redis}`,
  amqp: `amqp://guest:guest@127.0.0.1:${PORTS.amqp}`,
  management: `http://guest:guest@127.0.0.1:${PORTS.management}`,
  mongo: `mongodb://127.0.0.1:${PORTS.mongo}`,
} as const;

export { pgUrl };

/** The fault set's three-node RabbitMQ cluster (scripts/services.sh with RABBITMQ_NODES=3). */
export const CLUSTER = {
  nodes: [1, 2, 3] as const,
  amqpPort: 5782,
  managementPort: 15782,
  nodeName: (i: number) => `rq${i}@localhost`,
  amqp: (i: number) => `amqp://guest:guest@127.0.0.1:${5782 + i - 1}`,
  management: (i: number) => `http://127.0.0.1:${15782 + i - 1}`,
  pidFile: (i: number) => path.join(ROOT, ".local", "faults", "rabbitmq-cluster", `rq${i}`, "rabbit.pid"),
} as const;

export const clusterUrls = (order: number[] = [1, 2, 3]) => order.map((i) => CLUSTER.amqp(i));

export const ENDPUT_DATABASE = "endput";

export type Service = "postgres" | "redis" | "rabbitmq" | "mongo";

const FAULT_SERVICES_DIR = path.join(ROOT, ".local", "faults");

/** SIGKILLs the process a pid file names (no shutdown, no flush); returns the pid. */
function killByPidFile(file: string): number {
  const pid = Number(fs.readFileSync(file, "utf8").trim());
  process.kill(pid, "SIGKILL");
  return pid;
}

/** SIGKILLs a fault-set service that keeps a pid file; returns the pid. */
export function killService(service: "redis"): number {
  return killByPidFile(path.join(FAULT_SERVICES_DIR, "run", `${service}.pid`));
}

type Action = "up" | "down" | "status" | "start" | "stop" | "restart" | "kill" | "toxiproxy-bin";

/** Runs scripts/services.sh against the fault set; resolves with its combined output. */
export function services(action: Action, service?: Service): Promise<string> {
  return run(
    {
      AMQP_PORT: String(PORTS.amqp),
      RABBITMQ_MGMT_PORT: String(PORTS.management),
    },
    service ? [action, service] : [action],
  );
}

/** Starts (or restarts the missing nodes of) the fault set's cluster, or stops every node of it. */
export function clusterServices(action: "start" | "stop"): Promise<string> {
  return run({ RABBITMQ_NODES: "3", AMQP_PORT: String(CLUSTER.amqpPort), RABBITMQ_MGMT_PORT: String(CLUSTER.managementPort) }, [
    action,
    "rabbitmq",
  ]);
}

/** SIGKILLs one cluster node (the Erlang VM, by its pid file); resolves with the pid. */
export function killClusterNode(i: number): number {
  return killByPidFile(CLUSTER.pidFile(i));
}

/** The path of Toxiproxy's server, built from the Go module proxy on first use. */
export async function toxiproxyBinary(): Promise<string> {
  const out = await run({}, ["toxiproxy-bin"], true);
  return out.trim().split("\n").pop()!;
}

function run(more: Record<string, string>, args: string[], stdoutOnly = false): Promise<string> {
  const env = childEnvironment({
    SERVICES_DIR: FAULT_SERVICES_DIR,
    PG_PORT: String(PORTS.postgres),
    REDIS_PORT: String(PORTS.redis),
    MONGO_PORT: String(PORTS.mongo),
    ...more,
  });
  return new Promise((resolve, reject) => {
    execFile(path.join(ROOT, "scripts", "services.sh"), args, { cwd: ROOT, env, timeout: 300_000 }, (err, stdout, stderr) => {
      const out = `${stdout}${stderr}`;
      if (err) reject(new Error(`services.sh ${args.join(" ")} failed: ${err.message}\n${out}`));
      else resolve(stdoutOnly ? stdout : out);
    });
  });
}
