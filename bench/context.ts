// What every step gets: the world, the options, the services to account CPU
// to, and helpers to start the shipped processes with a scenario's settings.
import os from "node:os";
import path from "node:path";

import { print } from "graphql";

import { createGql, type Gql, READY } from "./gql.ts";
import { cpuBetween, type CpuSnapshot, cpuSnapshot, type CpuUsage, findServices, type Services } from "./machine.ts";
import type { Options } from "./options.ts";
import { type Child, freePort, ROOT, startChild } from "./processes.ts";
import { BENCH_DB_PREFIX, type Scenario, type World } from "./world.ts";

export interface BenchContext {
  world: World;
  options: Options;
  services: Services;
  cores: number;
  /** test-output/bench/<run id>: child logs and CPU profiles. */
  outDir: string;
  cpu(own?: Record<string, number[]>): CpuSnapshot;
  cpuBetween(a: CpuSnapshot, b: CpuSnapshot): CpuUsage;
  startGateway(s: Scenario, opts?: { cpuProf?: boolean }): Promise<RunningGateway>;
  startConsumers(s: Scenario, count: number, opts?: { cpuProf?: boolean }): Promise<Child[]>;
}

export interface RunningGateway extends Child {
  gql: Gql;
}

/**
 * Ready when HTTP answers and pipelineStats (broker, Redis, PostgreSQL) works. Not
 * /readyz: its Mongo check is a count, which FerretDB answers by reading every
 * document, and an abandoned count would keep loading the server during the run.
 */
async function gatewayReady(port: number, token: string | undefined): Promise<boolean> {
  const res = await fetch(`http://127.0.0.1:${port}/graphql`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify({ query: print(READY) }),
    signal: AbortSignal.timeout(5000),
  }).catch(() => undefined);
  if (!res?.ok) return false;
  const body = (await res.json().catch(() => undefined)) as { data?: unknown; errors?: unknown[] } | undefined;
  return body?.data != null && !body.errors?.length;
}

export function createContext(world: World, options: Options): BenchContext {
  const services = findServices(world.base);
  const cores = os.availableParallelism();
  const outDir = path.join(ROOT, "test-output", "bench", world.id);
  const own: Record<string, number[]> = {};
  let consumerSeq = 0;

  return {
    world,
    options,
    services,
    cores,
    outDir,
    cpu: (extra = {}) => cpuSnapshot(services, { ...own, ...extra }, `${BENCH_DB_PREFIX}${world.id}_`),
    cpuBetween: (a, b) => cpuBetween(a, b, cores),
    async startGateway(s, opts = {}) {
      const port = await freePort();
      const child = await startChild({
        name: `gateway-${s.name}`,
        kind: "gateway",
        nodeArgs: options.gatewayNodeArgs,
        env: { ...s.overrides, GATEWAY_HOST: "127.0.0.1", GATEWAY_PORT: String(port), ...options.gatewayEnv },
        port,
        logDir: outDir,
        cpuProfDir: opts.cpuProf ? path.join(outDir, "profiles") : undefined,
        ready: (p) => gatewayReady(p, s.config.gateway.token),
      });
      own.gateway = [child.pid];
      const client = createGql(port, s.config.gateway.token);
      return {
        ...child,
        gql: client.gql,
        async stop() {
          client.close();
          await child.stop();
          delete own.gateway;
        },
      };
    },
    async startConsumers(s, count, opts = {}) {
      const children = await Promise.all(
        Array.from({ length: count }, async (_, i) => {
          const port = await freePort();
          const id = `bench-${s.name}-${++consumerSeq}`;
          return startChild({
            name: `consumer-${s.name}-${i + 1}`,
            kind: "consumer",
            env: { ...s.overrides, CONSUMER_PORT: String(port), CONSUMER_ID: id, ...options.consumerEnv },
            port,
            logDir: outDir,
            cpuProfDir: opts.cpuProf ? path.join(outDir, "profiles") : undefined,
            ready: async (p) =>
              (await fetch(`http://127.0.0.1:${p}/readyz`, { signal: AbortSignal.timeout(5000) }).catch(() => undefined))?.ok ??
              false,
          });
        }),
      );
      own.consumer = [...(own.consumer ?? []), ...children.map((c) => c.pid)];
      return children.map((c) => ({
        ...c,
        async stop() {
          await c.stop();
          own.consumer = (own.consumer ?? []).filter((p) => p !== c.pid);
        },
      }));
    },
  };
}
