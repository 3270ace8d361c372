// The benchmark's isolated world on the developer's running services: per-run
// template databases migrated once, and per-scenario databases copied from them,
// AMQP and Redis prefixes and a Mongo database that no one else uses. Everything
// a scenario creates is listed, so cleanup() removes exactly that.
import { randomBytes } from "node:crypto";

import amqp from "amqplib";
import type { Redis } from "ioredis";
import type { MongoClient } from "mongodb";
import pg from "pg";

import { type Config, type Env, readConfig, readConfigWith } from "../common/config.ts";
import { createMongo, createRedis } from "../common/stores.ts";
import { makeTopology } from "../common/topology.ts";
import { migrate } from "../scripts/prisma.ts";
import { findServices } from "./machine.ts";
import { progress } from "./progress.ts";

export type Overrides = Partial<Record<keyof Env, string>>;

export const BENCH_DB_PREFIX = "tentativa_b_";

export interface Scenario {
  name: string;
  overrides: Overrides;
  config: Config;
  databases: { system1: string; system2: string; endput: string };
  /** The Mongo database belongs to another scenario (a preloaded log): dispose leaves it. */
  borrowedMongo: boolean;
}

export interface World {
  id: string;
  base: Config;
  redis: Redis;
  mongo: MongoClient;
  serverUrl(database: string): string;
  withPg<T>(database: string, fn: (c: pg.Client) => Promise<T>): Promise<T>;
  /** Fresh, migrated databases and unique broker, Redis and Mongo names. */
  scenario(name: string, extra?: Overrides, opts?: { borrowedMongo?: boolean }): Promise<Scenario>;
  /** Drops one scenario's databases, queues, keys and Mongo database. */
  dispose(s: Scenario): Promise<void>;
  /** Queue names the run declared outside the pipeline topology (the raw baseline). */
  trackQueue(name: string): void;
  cleanup(): Promise<void>;
}

export async function createWorld(opts: { keep: boolean }): Promise<World> {
  const base = readConfig();
  const stamp = new Date().toISOString().replace(/\D/g, "").slice(2, 12);
  const id = `${stamp}${randomBytes(2).toString("hex")}`;
  const serverUrl = (database: string) => {
    const url = new URL(base.databases.system1);
    url.pathname = `/${database}`;
    return url.toString();
  };
  async function withPg<T>(database: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
    const client = new pg.Client({ connectionString: serverUrl(database) });
    await client.connect();
    try {
      return await fn(client);
    } finally {
      await client.end();
    }
  }
  const admin = <T>(fn: (c: pg.Client) => Promise<T>) => withPg("postgres", fn);

  const ferretdbDatabase = findServices(base).ferretdbDatabase;
  const redis = createRedis(base, "bench");
  const mongo = createMongo(base);
  await mongo.connect();

  const prefix = `${BENCH_DB_PREFIX}${id}_`;
  const templates = { source: `${prefix}tpl_src`, endput: `${prefix}tpl_end` };
  const scenarios: Scenario[] = [];
  const extraQueues: string[] = [];

  progress(`run ${id}: migrating template databases ${templates.source}, ${templates.endput}`);
  await admin(async (c) => {
    for (const db of [templates.source, `${templates.source}2`, templates.endput]) await c.query(`create database "${db}"`);
  });
  // migrate() takes three databases; the second source copy is only a by-product.
  await migrate({
    system1: serverUrl(templates.source),
    system2: serverUrl(`${templates.source}2`),
    endput: serverUrl(templates.endput),
  });
  await admin((c) => c.query(`drop database if exists "${templates.source}2" with (force)`));

  async function dropScenarioState(s: Scenario): Promise<void> {
    const topo = makeTopology(s.config);
    const conn = await amqp.connect(s.config.broker.url);
    try {
      for (const q of [topo.primary, topo.dlq, ...topo.waitQueues.map((w) => w.name)]) {
        const ch = await conn.createChannel();
        ch.on("error", () => undefined);
        await ch.deleteQueue(q).catch(() => undefined);
        await ch.close().catch(() => undefined);
      }
      const ch = await conn.createChannel();
      ch.on("error", () => undefined);
      await ch.deleteExchange(topo.exchange).catch(() => undefined);
      await ch.close().catch(() => undefined);
    } finally {
      await conn.close().catch(() => undefined);
    }
    await deleteKeys(redis, `${s.config.redis.prefix}:*`);
    // FerretDB leaves a query running in PostgreSQL after its client is gone (an abandoned
    // lookup, or a sweep of a stopped consumer); it would hold a lock the drop waits for.
    if (!s.borrowedMongo && ferretdbDatabase)
      await admin((c) =>
        c.query(
          `select pg_cancel_backend(pid) from pg_stat_activity
           where datname = $1 and state = 'active' and pid <> pg_backend_pid() and position($2 in query) > 0`,
          [ferretdbDatabase, `"${s.config.mongo.database}".`],
        ),
      ).catch(() => undefined);
    if (!s.borrowedMongo)
      await mongo
        .db(s.config.mongo.database)
        .dropDatabase()
        .catch(() => undefined);
    await admin(async (c) => {
      for (const db of Object.values(s.databases)) await c.query(`drop database if exists "${db}" with (force)`);
    });
  }

  return {
    id,
    base,
    redis,
    mongo,
    serverUrl,
    withPg,
    async scenario(name, extra = {}, sopts = {}) {
      const dbs = { system1: `${prefix}${name}_s1`, system2: `${prefix}${name}_s2`, endput: `${prefix}${name}_e` };
      await admin(async (c) => {
        await c.query(`create database "${dbs.system1}" template "${templates.source}"`);
        await c.query(`create database "${dbs.system2}" template "${templates.source}"`);
        await c.query(`create database "${dbs.endput}" template "${templates.endput}"`);
      });
      const overrides: Overrides = {
        SYSTEM1_DATABASE_URL: serverUrl(dbs.system1),
        SYSTEM2_DATABASE_URL: serverUrl(dbs.system2),
        ENDPUT_DATABASE_URL: serverUrl(dbs.endput),
        AMQP_PREFIX: `bench-${id}-${name}`,
        REDIS_PREFIX: `bench-${id}-${name}`,
        MONGO_DATABASE: `bench_${id}_${name}`.replace(/-/g, "_"),
        // As `make start` and the tests do: the processes add GIN lookup indexes on FerretDB's backend.
        ...(ferretdbDatabase ? { FERRETDB_POSTGRESQL_URL: serverUrl(ferretdbDatabase) } : {}),
        LOG_LEVEL: "warn",
        LOG_PRETTY: "false",
        ...extra,
      };
      const s: Scenario = {
        name,
        overrides,
        config: readConfigWith(overrides),
        databases: dbs,
        borrowedMongo: sopts.borrowedMongo ?? false,
      };
      scenarios.push(s);
      return s;
    },
    async dispose(s) {
      if (opts.keep) return;
      const i = scenarios.indexOf(s);
      if (i !== -1) scenarios.splice(i, 1);
      await dropScenarioState(s);
    },
    trackQueue(name) {
      extraQueues.push(name);
    },
    async cleanup() {
      if (!opts.keep) {
        for (const s of [...scenarios])
          await dropScenarioState(s).catch((err) => progress(`cleanup ${s.name}: ${(err as Error).message}`));
        if (extraQueues.length > 0) {
          const conn = await amqp.connect(base.broker.url).catch(() => undefined);
          for (const q of extraQueues) {
            const ch = await conn?.createChannel();
            ch?.on("error", () => undefined);
            await ch?.deleteQueue(q).catch(() => undefined);
            await ch?.close().catch(() => undefined);
          }
          await conn?.close().catch(() => undefined);
        }
        await admin(async (c) => {
          const { rows } = await c.query<{ datname: string }>(`select datname from pg_database where starts_with(datname, $1)`, [
            prefix,
          ]);
          for (const { datname } of rows) await c.query(`drop database if exists "${datname}" with (force)`);
        }).catch((err) => progress(`cleanup databases: ${(err as Error).message}`));
      }
      await redis.quit().catch(() => undefined);
      await mongo.close().catch(() => undefined);
    },
  };
}

export async function deleteKeys(redis: Redis, pattern: string): Promise<number> {
  let cursor = "0";
  let deleted = 0;
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", pattern, "COUNT", 1000);
    cursor = next;
    if (keys.length > 0) deleted += await redis.del(...keys);
  } while (cursor !== "0");
  return deleted;
}
