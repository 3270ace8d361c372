// A per-test world on the real services: its own databases (copied from the
// migrated templates), AMQP names, Redis key prefix and Mongo database. Every
// client and process it starts is closed by cleanup().
import { randomUUID } from "node:crypto";

import type { Redis } from "ioredis";
import type { MongoClient } from "mongodb";
import { inject } from "vitest";

import { type AttemptLog, createAttemptLog } from "../../common/attempt-log.ts";
import { type Broker, createBroker } from "../../common/broker.ts";
import { type Config, type Env, readConfigWith } from "../../common/config.ts";
import type { System } from "../../common/contract.ts";
import { createLogger, type Logger } from "../../common/logger.ts";
import {
  createEndputClient,
  createMongo,
  createRedis,
  createSourceClients,
  type EndputClient,
  type SourceClients,
} from "../../common/stores.ts";
import { type Consumer, createConsumer } from "../../consumer/src/consumer.ts";
import type { decide } from "../../consumer/src/decide.ts";
import type { ConsumerMetrics } from "../../consumer/src/metrics.ts";
import { createGateway, type Gateway } from "../../gateway/src/app.ts";
import { createGatewayMetrics } from "../../gateway/src/metrics.ts";
import { createEventsPubSub } from "../../gateway/src/pubsub.ts";
import { createDatabase, dropDatabases, serverUrl } from "./pg-admin.ts";

export type Overrides = Partial<Record<keyof Env, string>>;

export interface RunningConsumer {
  consumer: Consumer;
  broker: Broker;
  stop(): Promise<void>;
}

export interface TestEnv {
  id: string;
  /** The settings this environment was built from (on top of the process environment's), for child processes. */
  settings: Overrides;
  config: Config;
  logger: Logger;
  sources: SourceClients;
  endput: EndputClient;
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
  queueDepth(queue: string): Promise<number>;
  /** Waits until every queue of the topology is empty and nothing is unacked. */
  drained(timeoutMs?: number): Promise<void>;
  cleanup(): Promise<void>;
}

export async function createTestEnv(overrides: Overrides = {}): Promise<TestEnv> {
  const id = randomUUID().replace(/-/g, "").slice(0, 12);
  const run = inject("dbRun");
  const dbs = { system1: `${run.prefix}${id}_s1`, system2: `${run.prefix}${id}_s2`, endput: `${run.prefix}${id}_e` };
  await Promise.all([
    createDatabase(dbs.system1, run.templateSource),
    createDatabase(dbs.system2, run.templateSource),
    createDatabase(dbs.endput, run.templateEndput),
  ]);
  const baseOverrides: Overrides = {
    SYSTEM1_DATABASE_URL: serverUrl(dbs.system1),
    SYSTEM2_DATABASE_URL: serverUrl(dbs.system2),
    ENDPUT_DATABASE_URL: serverUrl(dbs.endput),
    AMQP_PREFIX: `test-${id}`,
    REDIS_PREFIX: `test-${id}`,
    MONGO_DATABASE: `test_${id}`,
    RETRY_DELAY_MS: "200",
    FERRETDB_POSTGRESQL_URL: serverUrl("ferretdb"),
    CONSUMER_PORT: "0",
    LOG_LEVEL: "warn",
    LOG_PRETTY: "false",
    DATABASE_POOL_SIZE: "5",
    ...overrides,
  };
  const config = readConfigWith(baseOverrides);
  const logger = createLogger(config, "test");
  const closers: (() => Promise<unknown>)[] = [];

  const sources = createSourceClients(config);
  closers.push(() => Promise.all([sources.SYSTEM1.$disconnect(), sources.SYSTEM2.$disconnect()]));
  const endput = createEndputClient(config);
  closers.push(() => endput.$disconnect());
  const redis = createRedis(config, "test");
  closers.push(() => redis.quit());
  const redisSub = createRedis(config, "test-sub");
  closers.push(() => redisSub.quit());
  const mongo = createMongo(config);
  closers.push(() => mongo.close());
  const log = createAttemptLog({ db: mongo.db(config.mongo.database), config, logger });
  await log.ensureIndexes();
  const broker = createBroker({ config, logger, name: "test-gateway" });
  closers.push(() => broker.close());
  await broker.ready();

  const pubsub = createEventsPubSub(redis, redisSub);
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
  closers.push(() => gateway.close());

  const consumers: RunningConsumer[] = [];

  async function queueDepth(queue: string): Promise<number> {
    return broker.withChannel(async (ch) => (await ch.checkQueue(queue)).messageCount);
  }

  const env: TestEnv = {
    id,
    settings: baseOverrides,
    config,
    logger,
    sources,
    endput,
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
      const cfg = readConfigWith({ ...baseOverrides, CONSUMER_ID: `consumer-${consumers.length + 1}`, ...more });
      const cBroker = createBroker({ config: cfg, logger, name: "test-consumer", waitQueues: true });
      const consumer = createConsumer({ config: cfg, logger, broker: cBroker, endput, log, redis, metrics, ...opts });
      consumer.start();
      await cBroker.ready();
      const deadline = Date.now() + 10_000;
      while (!consumer.ready() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      let stopped = false;
      const running: RunningConsumer = {
        consumer,
        broker: cBroker,
        async stop() {
          if (stopped) return;
          stopped = true;
          await consumer.stop();
          await cBroker.close();
        },
      };
      consumers.push(running);
      return running;
    },
    queueDepth,
    async drained(timeoutMs = 60_000) {
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
        if (depths.every((d) => d === 0) && inFlight === 0) {
          if (++quiet >= 3) return;
        } else quiet = 0;
        await new Promise((r) => setTimeout(r, 150));
      }
      throw new Error("queues did not drain in time");
    },
    async cleanup() {
      for (const c of consumers) await c.stop().catch(() => undefined);
      const topo = broker.topology;
      await broker
        .withChannel(async (ch) => {
          for (const q of [topo.primary, topo.dlq, ...topo.waitQueues.map((w) => w.name)])
            await ch.deleteQueue(q).catch(() => undefined);
          await ch.deleteExchange(topo.exchange).catch(() => undefined);
        })
        .catch(() => undefined);
      const keys = await redis.keys(`${config.redis.prefix}:*`);
      if (keys.length) await redis.del(...keys);
      await mongo
        .db(config.mongo.database)
        .dropDatabase()
        .catch(() => undefined);
      for (const close of closers.reverse()) await close().catch(() => undefined);
      await dropDatabases(Object.values(dbs));
    },
  };
  return env;
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
