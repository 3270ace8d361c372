// One scenario's world on the fault services: emptied source and sink tables,
// its own AMQP names, Redis prefix and Mongo database, the store clients the
// checks read from, and the gateway/consumer processes it starts. cleanup()
// stops every process and closes every client.
import { randomBytes } from "node:crypto";

import amqp, { type Channel, type ChannelModel } from "amqplib";
import { Redis } from "ioredis";
import { MongoClient } from "mongodb";
import pg from "pg";

import { type Config, type Env, readConfigWith } from "../../../common/config.ts";
import type { System } from "../../../common/contract.ts";
import { makeTopology, type Topology } from "../../../common/topology.ts";
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

export async function createWorld(
  scenario: string,
  overrides: EnvOverrides = {},
  broker: WorldBroker = SINGLE_BROKER,
): Promise<World> {
  const id = `${scenario}-${randomBytes(3).toString("hex")}`;
  const env: Record<string, string> = {
    SYSTEM1_DATABASE_URL: URLS.system1,
    SYSTEM2_DATABASE_URL: URLS.system2,
    ENDPUT_DATABASE_URL: URLS.endput,
    DATABASE_POOL_SIZE: "10",
    REDIS_URL: URLS.redis,
    REDIS_PREFIX: `faults-${id}`,
    AMQP_URL: broker.amqp.join(","),
    AMQP_PREFIX: `faults-${id}`,
    MONGO_URL: URLS.mongo,
    // The fault set's FerretDB keeps its data in this set's PostgreSQL.
    FERRETDB_POSTGRESQL_URL: pgUrl("ferretdb"),
    MONGO_DATABASE: `faults_${id.replace(/-/g, "_")}`,
    RETRY_DELAY_MS: "200",
    RETRY_BACKOFF: "fixed",
    MAX_ATTEMPTS: "5",
    GATEWAY_HOST: "127.0.0.1",
    LOG_LEVEL: "info",
    LOG_PRETTY: "false",
    ...(overrides as Record<string, string>),
  };
  const config = readConfigWith(env);
  const topology = makeTopology(config);

  const sources = { SYSTEM1: quietPool(URLS.system1), SYSTEM2: quietPool(URLS.system2) };
  const endput = quietPool(URLS.endput);
  for (const p of [sources.SYSTEM1, sources.SYSTEM2]) await p.query("truncate orders restart identity");
  await endput.query("truncate orders restart identity");

  const redis = new Redis(URLS.redis, { maxRetriesPerRequest: 3, retryStrategy: (n) => Math.min(n * 100, 1000) });
  redis.on("error", () => undefined);
  const mongo = new MongoClient(URLS.mongo, { serverSelectionTimeoutMS: 5000 });
  mongo.on("error", () => undefined);

  let conn: ChannelModel | undefined;
  /** A test-owned connection to the first node that answers. */
  async function connection(): Promise<ChannelModel> {
    if (conn) return conn;
    let c: ChannelModel | undefined;
    let last: unknown;
    for (const url of broker.amqp) {
      c = await amqp.connect(url, { timeout: 5000 }).catch((err: unknown) => ((last = err), undefined));
      if (c) break;
    }
    if (!c) throw last;
    c.on("error", () => undefined);
    c.on("close", () => conn === c && (conn = undefined));
    conn = c;
    return c;
  }

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
      const port = await freePort();
      world.gateway = await spawnService({
        kind: "gateway",
        name: `${scenario}-gateway-${++counter}`,
        port,
        require,
        env: { ...env, ...(more as Record<string, string>), GATEWAY_PORT: String(port) },
      });
      return world.gateway;
    },
    async startConsumer(more = {}) {
      const port = await freePort();
      const n = ++counter;
      const child = await spawnService({
        kind: "consumer",
        name: `${scenario}-consumer-${n}`,
        port,
        env: { CONSUMER_ID: `consumer-${n}`, ...env, ...(more as Record<string, string>), CONSUMER_PORT: String(port) },
      });
      world.consumers.push(child);
      return child;
    },
    async gql(query, variables, timeoutMs = 120_000) {
      if (!world.gateway) throw new Error("no gateway started");
      const res = await fetch(`http://127.0.0.1:${world.gateway.port}/graphql`, {
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
    },
    async withChannel(fn) {
      const c = await connection();
      const ch = await c.createChannel();
      ch.on("error", () => undefined);
      try {
        return await fn(ch);
      } finally {
        await ch.close().catch(() => undefined);
      }
    },
    async publishRaw(messages) {
      const c = await connection();
      const ch = await c.createConfirmChannel();
      ch.on("error", () => undefined);
      try {
        for (const m of messages) {
          const props =
            m.headers === undefined && m.messageId === undefined
              ? {}
              : { headers: m.headers, messageId: m.messageId, persistent: true };
          if (!ch.publish(topology.exchange, topology.routingKey, m.body, props)) await new Promise((r) => ch.once("drain", r));
        }
        await ch.waitForConfirms();
      } finally {
        await ch.close().catch(() => undefined);
      }
    },
    async readyCounts() {
      const c = await connection();
      const out: Record<string, number> = {};
      for (const name of [topology.primary, ...topology.waitQueues.map((w) => w.name), topology.dlq]) {
        // A missing queue (404) closes the channel it was asked on: one channel per check.
        const ch = await c.createChannel();
        ch.on("error", () => undefined);
        try {
          out[name] = (await ch.checkQueue(name)).messageCount;
        } catch (err) {
          if ((err as { code?: number }).code !== 404) throw err;
          out[name] = 0;
        } finally {
          await ch.close().catch(() => undefined);
        }
      }
      return out;
    },
    async managementQueue(name) {
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
    },
    async cursor(system) {
      const raw = await redis.get(`${config.redis.prefix}:cursor:${system}`);
      return raw === null ? 0 : Number(raw);
    },
    async cleanup() {
      const procs = [...world.consumers, ...(world.gateway ? [world.gateway] : [])];
      await Promise.all(procs.map((p) => p.stop(10_000).catch(() => undefined)));
      await world
        .withChannel(async (ch) => {
          for (const q of [topology.primary, topology.dlq, ...topology.waitQueues.map((w) => w.name)])
            await ch.deleteQueue(q).catch(() => undefined);
          await ch.deleteExchange(topology.exchange).catch(() => undefined);
        })
        .catch(() => undefined);
      await conn?.close().catch(() => undefined);
      await new Promise<void>((resolve) => {
        const stream = redis.scanStream({ match: `${config.redis.prefix}:*`, count: 5000 });
        stream.on("data", (keys: string[]) => keys.length && void redis.unlink(...keys).catch(() => undefined));
        stream.on("end", resolve);
        stream.on("error", () => resolve());
      });
      await mongo
        .db(config.mongo.database)
        .dropDatabase()
        .catch(() => undefined);
      await mongo.close().catch(() => undefined);
      redis.disconnect();
      await Promise.all([sources.SYSTEM1.end(), sources.SYSTEM2.end(), endput.end()]).catch(() => undefined);
    },
  };
  return world;
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
