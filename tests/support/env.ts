// A per-test world (tests/support/world/) with the gateway built in-process on
// it, and consumers started in-process or as processes. Every client and process
// it starts is closed by cleanup().
import { randomUUID } from "node:crypto";
import type { AddressInfo } from "node:net";
import path from "node:path";

import type { Redis } from "ioredis";
import type { MongoClient } from "mongodb";
import type pg from "pg";
import { inject } from "vitest";

import { type AttemptLog, createAttemptLog } from "../../common/attempt-log.ts";
import { type Broker, createBroker } from "../../common/broker.ts";
import { type Config, readConfigWith } from "../../common/config.ts";
import type { System } from "../../common/contract.ts";
import { createLogger, type Logger } from "../../common/logger.ts";
import { createEndputClient, createSourceClients, type EndputClient, type SourceClients } from "../../common/prisma-clients.ts";
import { createEndputPool, createRedis } from "../../common/stores.ts";
import { type Consumer, createConsumer } from "../../consumer/src/consumer.ts";
import type { decide } from "../../consumer/src/decide.ts";
import type { ConsumerMetrics } from "../../consumer/src/metrics.ts";
import { createGateway, type Gateway } from "../../gateway/src/app.ts";
import { createGatewayMetrics } from "../../gateway/src/metrics.ts";
import { createEventsPubSub } from "../../gateway/src/pubsub.ts";
import { type PipelineStats, pipelineStats } from "../../gateway/src/services/stats.ts";
import { type Child, type Kind, type LaunchOptions, ROOT } from "./world/launcher.ts";
import { serverUrl } from "./world/pg-admin.ts";
import { createWorld, type Settings, type World } from "./world/world.ts";

export type Overrides = Settings;

/** Where the processes a test launches write their output. */
export const LOG_DIR = path.join(ROOT, "test-output", "tests", "logs");

export interface RunningConsumer {
  consumer: Consumer;
  broker: Broker;
  stop(): Promise<void>;
}

export interface TestEnv {
  id: string;
  world: World;
  /** The settings this environment was built from (on top of the process environment's), for child processes. */
  settings: Overrides;
  config: Config;
  logger: Logger;
  sources: SourceClients;
  endput: EndputClient;
  /** What the in-process consumers write the endput with, as the consumer process does. */
  endputPool: pg.Pool;
  redis: Redis;
  mongo: MongoClient;
  log: AttemptLog;
  /** The gateway's broker connection (publisher). */
  broker: Broker;
  gateway: Gateway;
  /** Runs a GraphQL operation in-process through Yoga. */
  gql<T = Record<string, unknown>>(
    query: string,
    variables?: Record<string, unknown>,
    headers?: Record<string, string>,
  ): Promise<{ data?: T; errors?: { message: string; extensions?: Record<string, unknown> }[] }>;
  startConsumer(overrides?: Overrides, metrics?: ConsumerMetrics, opts?: { decide?: typeof decide }): Promise<RunningConsumer>;
  /** The gateway or consumer as a child process on this environment; stopped by cleanup(). */
  launch(kind: Kind, settings?: Overrides, opts?: Partial<Omit<LaunchOptions, "kind" | "settings">>): Promise<Child>;
  queueDepth(queue: string): Promise<number>;
  /** Waits until every queue of the topology is empty and nothing is unacked. */
  drained(timeoutMs?: number): Promise<void>;
  cleanup(): Promise<void>;
}

/** Serves the environment's gateway on a free loopback port; returns the port and its base URL. */
export async function serveGateway(e: TestEnv): Promise<{ port: number; base: string }> {
  e.gateway.server.listen(0, "127.0.0.1");
  await new Promise((r) => e.gateway.server.once("listening", r));
  const { port } = e.gateway.server.address() as AddressInfo;
  return { port, base: `http://127.0.0.1:${port}` };
}

export async function createTestEnv(overrides: Overrides = {}): Promise<TestEnv> {
  const id = randomUUID().replace(/-/g, "").slice(0, 12);
  const world = await testWorld(id, overrides);
  const { config, redis, mongo, settings } = world;
  const logger = createLogger(config, "test");
  const release = world.onTeardown;
  const { sources, endput, log, broker, gateway } = await inProcessGateway(world, logger);
  const endputPool = createEndputPool(config, (err) => logger.warn({ err: err.message }, "idle endput connection failed"));
  release(() => endputPool.end());

  const consumers: RunningConsumer[] = [];

  async function queueDepth(queue: string): Promise<number> {
    return broker.withChannel(async (ch) => (await ch.checkQueue(queue)).messageCount);
  }

  const env: TestEnv = {
    id,
    world,
    settings,
    config,
    logger,
    sources,
    endput,
    endputPool,
    redis,
    mongo,
    log,
    broker,
    gateway,
    async gql(query, variables, headers = {}) {
      const res = await gateway.yoga.fetch("http://localhost/graphql", {
        method: "POST",
        headers: { "content-type": "application/json", ...headers },
        body: JSON.stringify({ query, variables }),
      });
      return (await res.json()) as never;
    },
    async startConsumer(more = {}, metrics, opts = {}) {
      const cfg = readConfigWith({ ...settings, CONSUMER_ID: `consumer-${consumers.length + 1}`, ...more });
      const running = await startInProcess({ config: cfg, logger, endput: endputPool, log, redis, metrics, ...opts });
      consumers.push(running);
      release(() => running.stop());
      return running;
    },
    launch(kind, more = {}, opts = {}) {
      return world.launch({ kind, name: `${id}-${kind}`, logDir: LOG_DIR, graceMs: 5_000, ...opts, settings: more });
    },
    queueDepth,
    drained: (timeoutMs = 60_000) =>
      waitDrained(broker, consumers, () => pipelineStats({ broker, redis, config, sources, endput }), timeoutMs),
    cleanup: () => world.teardown(),
  };
  return env;
}

/** The test's world: copies of the run's template databases, and the tests' settings under `overrides`. */
function testWorld(id: string, overrides: Overrides): Promise<World> {
  const run = inject("dbRun");
  return createWorld({
    name: `test-${id}`,
    databases: {
      copyOf: { source: run.templateSource, endput: run.templateEndput },
      names: { system1: `${run.prefix}${id}_s1`, system2: `${run.prefix}${id}_s2`, endput: `${run.prefix}${id}_e` },
    },
    settings: {
      RETRY_DELAY_MS: "200",
      FERRETDB_POSTGRESQL_URL: serverUrl("ferretdb"),
      CONSUMER_PORT: "0",
      LOG_LEVEL: "warn",
      LOG_PRETTY: "false",
      DATABASE_POOL_SIZE: "5",
      ...overrides,
    },
    redis: (config) => createRedis(config, "test"),
  });
}

/** The gateway in this process, on the world's stores; every client it opens is released with the world. */
async function inProcessGateway(world: World, logger: Logger) {
  const { config, redis, mongo } = world;
  const release = world.onTeardown;
  const sources = createSourceClients(config);
  release(() => Promise.all([sources.SYSTEM1.$disconnect(), sources.SYSTEM2.$disconnect()]));
  const endput = createEndputClient(config);
  release(() => endput.$disconnect());
  const redisSub = createRedis(config, "test-sub");
  release(() => redisSub.quit());
  const log = createAttemptLog({ db: mongo.db(config.mongo.database), config, logger });
  await log.ensureIndexes();
  const broker = createBroker({ config, logger, name: "test-gateway" });
  release(() => broker.close());
  await broker.ready();

  const pubsub = createEventsPubSub(redis, redisSub, config.gateway.subscriptionBuffer);
  const gateway = createGateway({
    config,
    logger,
    sources,
    endput,
    redis,
    broker,
    log,
    pubsub,
    metrics: createGatewayMetrics({ broker, redis, config, sources }),
  });
  release(() => gateway.close());
  return { sources, endput, log, broker, gateway };
}

/** A consumer in this process, with its own broker connection. */
async function startInProcess(deps: Omit<Parameters<typeof createConsumer>[0], "broker">): Promise<RunningConsumer> {
  const broker = createBroker({ config: deps.config, logger: deps.logger, name: "test-consumer", waitQueues: true });
  const consumer = createConsumer({ ...deps, broker });
  consumer.start();
  await broker.ready();
  const deadline = Date.now() + 10_000;
  while (!consumer.ready() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  let stopped = false;
  return {
    consumer,
    broker,
    async stop() {
      if (stopped) return;
      stopped = true;
      await consumer.stop();
      await broker.close();
    },
  };
}

/**
 * Waits until the queues are empty, no in-process consumer holds a delivery, and the pipeline's
 * own reconciliation has nothing in flight: a queue's message count leaves out the deliveries a
 * consumer has not acked yet, and a consumer process's are seen only there.
 */
async function waitDrained(
  broker: Broker,
  consumers: RunningConsumer[],
  stats: () => Promise<PipelineStats>,
  timeoutMs: number,
): Promise<void> {
  const topo = broker.topology;
  const deadline = Date.now() + timeoutMs;
  // Empty twice in a row, some time apart: a message can be between queues for a moment.
  let quiet = 0;
  while (Date.now() < deadline) {
    const depths = await broker.withChannel(async (ch) => {
      const names = [topo.primary, ...topo.waitQueues.map((w) => w.name)];
      const counts = [];
      for (const n of names) {
        const q = await ch.checkQueue(n).catch(() => ({ messageCount: 0 }));
        counts.push(q.messageCount);
      }
      return counts;
    });
    const inFlight = consumers.reduce((n, c) => n + c.consumer.stats().inFlight, 0);
    if (depths.every((d) => d === 0) && inFlight === 0 && (await stats()).systems.every((s) => s.inFlight === 0)) {
      if (++quiet >= 3) return;
    } else quiet = 0;
    await new Promise((r) => setTimeout(r, 150));
  }
  throw new Error("queues did not drain in time");
}

export async function countTrue(env: TestEnv, system: System): Promise<number> {
  return env.sources[system].order.count({ where: { securityCheck: true } });
}

export async function waitFor<T>(fn: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last = await fn();
  while (!ok(last)) {
    if (Date.now() > deadline) throw new Error(`condition not met in ${timeoutMs} ms; last value ${JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, 100));
    last = await fn();
  }
  return last;
}
