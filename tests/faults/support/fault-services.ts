// The fault suite's own set of backing services: a separate data folder and
// ports, so restarting or stopping them never touches the developer's services.
import { execFile } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { environment } from "../../../common/config.ts";

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

export const ENDPUT_DATABASE = "endput";

export type Service = "postgres" | "redis" | "rabbitmq" | "mongo";

/** Runs scripts/services.sh against the fault set; resolves with its combined output. */
export function services(
  action: "up" | "down" | "status" | "start" | "stop" | "restart" | "kill",
  service?: Service,
): Promise<string> {
  const env = {
    ...environment(),
    SERVICES_DIR: path.join(ROOT, ".local", "faults"),
    PG_PORT: String(PORTS.postgres),
    REDIS_PORT: String(PORTS.redis),
    AMQP_PORT: String(PORTS.amqp),
    RABBITMQ_MGMT_PORT: String(PORTS.management),
    MONGO_PORT: String(PORTS.mongo),
  };
  const args = service ? [action, service] : [action];
  return new Promise((resolve, reject) => {
    execFile(path.join(ROOT, "scripts", "services.sh"), args, { cwd: ROOT, env, timeout: 180_000 }, (err, stdout, stderr) => {
      const out = `${stdout}${stderr}`;
      if (err) reject(new Error(`services.sh ${args.join(" ")} failed: ${err.message}\n${out}`));
      else resolve(out);
    });
  });
}
