// One scenario's world on the fault services: the one world of
// tests/support/world/ on the fault set's shared databases (emptied first), with
// its own AMQP names, Redis prefix and Mongo database, the store clients the
// checks read from, and the gateway/consumer processes it starts. cleanup() stops
// every process and closes every client.
import { randomBytes } from "node:crypto";

import type { Channel, ConfirmChannel } from "amqplib";
import { Redis } from "ioredis";
import { MongoClient } from "mongodb";
import pg from "pg";

import type { Config, Env } from "../../../common/config.ts";
import type { System } from "../../../common/contract.ts";
import type { Topology } from "../../../common/topology.ts";
import { createWorld as createBaseWorld, type World as BaseWorld } from "../../support/world/world.ts";
import { pgUrl, URLS } from "./fault-services.ts";
import { type Child, freePort, spawnService } from "./processes.ts";

export type EnvOverrides = Partial<Record<keyof Env, string>>;

/** The broker nodes a world's processes and checks use: the single fault broker, or the cluster's nodes. */
export interface WorldBroker {
  amqp: string[];
  /** Management API base URLs (no credentials), one per node. */
  management: string[];
}

export const SINGLE_BROKER: WorldBroker = {
  amqp: [URLS.amqp],
  management: [URLS.management.replace(/\/\/guest:guest@/, "//")],
};

export interface GqlResponse<T = Record<string, unknown>> {
  status: number;
  data?: T;
  errors?: { message: string; extensions?: Record<string, unknown> }[];
}

export interface World {
  scenario: string;
  broker: WorldBroker;
  env: Record<string, string>;
  config: Config;
  topology: Topology;
  sources: Record<System, pg.Pool>;
  endput: pg.Pool;
  redis: Redis;
  mongo: MongoClient;
  gateway: Child | undefined;
  consumers: Child[];
  /** `require` names the /readyz checks to wait for (default: all of them). */
  startGateway(more?: EnvOverrides, require?: string[]): Promise<Child>;
  startConsumer(more?: EnvOverrides): Promise<Child>;
  gql<T = Record<string, unknown>>(
    query: string,
    variables?: Record<string, unknown>,
    timeoutMs?: number,
  ): Promise<GqlResponse<T>>;
  /** Runs fn on a fresh channel of a test-owned AMQP connection (reconnects after a broker restart). */
  withChannel<T>(fn: (ch: Channel) => Promise<T>): Promise<T>;
  /** Publishes raw deliveries to the primary exchange on a confirm channel; resolves when all are confirmed. */
  publishRaw(messages: { body: Buffer; headers?: Record<string, unknown>; messageId?: string }[]): Promise<void>;
  /** Ready-message counts from the broker (exact, not sampled). */
  readyCounts(): Promise<Record<string, number>>;
  /** The management API view of a queue (sampled every ~5 s by the broker). */
  managementQueue(name: string): Promise<{ messages: number; ready: number; unacked: number; consumers: number }>;
  cursor(system: System): Promise<number>;
  cleanup(): Promise<void>;
}

const quietPool = (url: string, max = 4) => {
  const pool = new pg.Pool({ connectionString: url, max, connectionTimeoutMillis: 5000 });
  // Outage scenarios terminate sessions; an idle client's error must not crash the test.
  pool.on("error", () => undefined);
  return pool;
};

/** The scenario's world (tests/support/world/) on the fault services' shared, migrated databases. */
function faultWorld(scenario: string, overrides: EnvOverrides, broker: WorldBroker): Promise<BaseWorld> {
  return createBaseWorld({
    name: `faults-${scenario}-${randomBytes(3).toString("hex")}`,
    databases: { shared: { system1: URLS.system1, system2: URLS.system2, endput: URLS.endput } },
    settings: {
      DATABASE_POOL_SIZE: "10",
      REDIS_URL: URLS.redis,
      AMQP_URL: broker.amqp.join(","),
      MONGO_URL: URLS.mongo,
      // The fault set's FerretDB keeps its data in this set's PostgreSQL.
      FERRETDB_POSTGRESQL_URL: pgUrl("ferretdb"),
      RETRY_DELAY_MS: "200",
      RETRY_BACKOFF: "fixed",
      MAX_ATTEMPTS: "5",
      GATEWAY_HOST: "127.0.0.1",
      LOG_LEVEL: "info",
      LOG_PRETTY: "false",
      ...overrides,
    },
    redis: () => {
      const redis = new Redis(URLS.redis, { maxRetriesPerRequest: 3, retryStrategy: (n) => Math.min(n * 100, 1000) });
      redis.on("error", () => undefined);
      return redis;
    },
    mongo: () => {
      const mongo = new MongoClient(URLS.mongo, { serverSelectionTimeoutMS: 5000 });
      mongo.on("error", () => undefined);
      return mongo;
    },
  });
}

export async function createWorld(
  scenario: string,
  overrides: EnvOverrides = {},
  broker: WorldBroker = SINGLE_BROKER,
): Promise<World> {
  const base = await faultWorld(scenario, overrides, broker);
  const { settings: env, config, topology, redis, mongo, withChannel } = base;
  const sources = { SYSTEM1: quietPool(URLS.system1), SYSTEM2: quietPool(URLS.system2) };
  const endput = quietPool(URLS.endput);
  base.onTeardown(() => Promise.all([sources.SYSTEM1.end(), sources.SYSTEM2.end(), endput.end()]));
  base.onTeardown(() => {
    const procs = [...world.consumers, ...(world.gateway ? [world.gateway] : [])];
    return Promise.all(procs.map((p) => p.stop(10_000).catch(() => undefined)));
  });

  let counter = 0;
  const world: World = {
    scenario,
    broker,
    env,
    config,
    topology,
    sources,
    endput,
    redis,
    mongo,
    gateway: undefined,
    consumers: [],
    async startGateway(more = {}, require) {
      world.gateway = await spawnService({
        kind: "gateway",
        name: `${scenario}-gateway-${++counter}`,
        port: await freePort(),
        require,
        settings: { ...env, ...(more as Record<string, string>) },
      });
      return world.gateway;
    },
    async startConsumer(more = {}) {
      const n = ++counter;
      const child = await spawnService({
        kind: "consumer",
        name: `${scenario}-consumer-${n}`,
        port: await freePort(),
        settings: { CONSUMER_ID: `consumer-${n}`, ...env, ...(more as Record<string, string>) },
      });
      world.consumers.push(child);
      return child;
    },
    gql: (query, variables, timeoutMs) => gatewayGql(world.gateway, query, variables, timeoutMs),
    withChannel,
    publishRaw: (messages) => publishRaw(withConfirmChannel(base), topology, messages),
    readyCounts: () => readyCounts(withChannel, topology),
    managementQueue: (name) => managementQueue(broker, name),
    async cursor(system) {
      const raw = await redis.get(`${config.redis.prefix}:cursor:${system}`);
      return raw === null ? 0 : Number(raw);
    },
    cleanup: () => base.teardown(),
  };
  return world;
}

async function gatewayGql<T>(
  gateway: Child | undefined,
  query: string,
  variables?: Record<string, unknown>,
  timeoutMs = 120_000,
): Promise<GqlResponse<T>> {
  if (!gateway) throw new Error("no gateway started");
  const res = await fetch(`${gateway.url}/graphql`, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json" },
    body: JSON.stringify({ query, variables }),
    signal: AbortSignal.timeout(timeoutMs),
  });
  const text = await res.text();
  try {
    return { status: res.status, ...(JSON.parse(text) as object) };
  } catch {
    return { status: res.status, errors: [{ message: `non-JSON response: ${text.slice(0, 200)}` }] };
  }
}

const withConfirmChannel =
  (base: BaseWorld) =>
  async <T>(fn: (ch: ConfirmChannel) => Promise<T>): Promise<T> => {
    const ch = await (await base.connection()).createConfirmChannel();
    ch.on("error", () => undefined);
    try {
      return await fn(ch);
    } finally {
      await ch.close().catch(() => undefined);
    }
  };

async function publishRaw(
  withConfirm: <T>(fn: (ch: ConfirmChannel) => Promise<T>) => Promise<T>,
  topology: Topology,
  messages: { body: Buffer; headers?: Record<string, unknown>; messageId?: string }[],
): Promise<void> {
  await withConfirm(async (ch) => {
    for (const m of messages) {
      const props =
        m.headers === undefined && m.messageId === undefined
          ? {}
          : { headers: m.headers, messageId: m.messageId, persistent: true };
      if (!ch.publish(topology.exchange, topology.routingKey, m.body, props)) await new Promise((r) => ch.once("drain", r));
    }
    await ch.waitForConfirms();
  });
}

async function readyCounts(withChannel: BaseWorld["withChannel"], topology: Topology): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const name of [topology.primary, ...topology.waitQueues.map((w) => w.name), topology.dlq]) {
    // A missing queue (404) closes the channel it was asked on: one channel per check.
    try {
      out[name] = await withChannel(async (ch) => (await ch.checkQueue(name)).messageCount);
    } catch (err) {
      if ((err as { code?: number }).code !== 404) throw err;
      out[name] = 0;
    }
  }
  return out;
}

async function managementQueue(broker: WorldBroker, name: string) {
  const res = await managementGet(broker, `/api/queues/%2F/${encodeURIComponent(name)}`, [404]);
  if (res.status === 404) return { messages: 0, ready: 0, unacked: 0, consumers: 0 };
  if (!res.ok) throw new Error(`management API ${res.status} for ${name}`);
  const q = (await res.json()) as Record<string, number | undefined>;
  return {
    messages: q.messages ?? 0,
    ready: q.messages_ready ?? 0,
    unacked: q.messages_unacknowledged ?? 0,
    consumers: q.consumers ?? 0,
  };
}

/** GET on the management API of the first node that answers (a cluster node may be down). */
export async function managementGet(broker: WorldBroker, apiPath: string, accept: number[] = []): Promise<Response> {
  let last: unknown;
  for (const base of broker.management) {
    try {
      const res = await fetch(new URL(apiPath, base), {
        headers: { authorization: `Basic ${Buffer.from("guest:guest").toString("base64")}` },
        signal: AbortSignal.timeout(5000),
      });
      if (res.ok || accept.includes(res.status)) return res;
      last = new Error(`management API ${res.status} for ${apiPath} on ${base}`);
    } catch (err) {
      last = err;
    }
  }
  throw last;
}
