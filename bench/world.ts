// The benchmark's run on the developer's running services: template databases
// migrated once per run, and per scenario one world of tests/support/world/
// (databases copied from the templates, AMQP and Redis prefixes and a Mongo
// database that no one else uses). Everything a scenario creates is its world's,
// so cleanup() removes exactly that.
import { randomBytes } from "node:crypto";

import amqp from "amqplib";
import type { Redis } from "ioredis";
import type { MongoClient } from "mongodb";
import type pg from "pg";

import { type Config, readConfig } from "../common/config.ts";
import { createMongo, createRedis } from "../common/stores.ts";
import { createTemplates, dropRun, serverUrl, withPg } from "../tests/support/world/pg-admin.ts";
import { createWorld as createScenarioWorld, type Settings, type World as ScenarioWorld } from "../tests/support/world/world.ts";
import { findServices } from "./machine.ts";
import { progress } from "./progress.ts";

export type Overrides = Settings;

export const BENCH_DB_PREFIX = "tentativa_b_";

export interface Scenario {
  name: string;
  world: ScenarioWorld;
  /** The settings its processes get. */
  overrides: Overrides;
  config: Config;
  databases: { system1: string; system2: string; endput: string };
}

export interface World {
  id: string;
  base: Config;
  redis: Redis;
  mongo: MongoClient;
  serverUrl(database: string): string;
  withPg<T>(database: string, fn: (c: pg.Client) => Promise<T>): Promise<T>;
  /** Fresh, migrated databases and unique broker, Redis and Mongo names; `borrowedMongo`: the Mongo database belongs to another scenario (a preloaded log). */
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

  const ferretdbDatabase = findServices(base).ferretdbDatabase;
  const redis = createRedis(base, "bench");
  const mongo = createMongo(base);
  await mongo.connect();

  const prefix = `${BENCH_DB_PREFIX}${id}_`;
  const templates = { source: `${prefix}tpl_src`, endput: `${prefix}tpl_end` };
  const scenarios: Scenario[] = [];
  const extraQueues: string[] = [];

  progress(`run ${id}: migrating template databases ${templates.source}, ${templates.endput}`);
  await createTemplates(templates);

  return {
    id,
    base,
    redis,
    mongo,
    serverUrl,
    withPg,
    async scenario(name, extra = {}, sopts = {}) {
      const databases = { system1: `${prefix}${name}_s1`, system2: `${prefix}${name}_s2`, endput: `${prefix}${name}_e` };
      const world = await createScenarioWorld({
        name: `bench-${id}-${name}`,
        databases: { copyOf: templates, names: databases },
        settings: {
          // As `make start` and the tests do: the processes add GIN lookup indexes on FerretDB's backend.
          ...(ferretdbDatabase ? { FERRETDB_POSTGRESQL_URL: serverUrl(ferretdbDatabase) } : {}),
          LOG_LEVEL: "warn",
          LOG_PRETTY: "false",
          ...extra,
        },
        redis: (config) => createRedis(config, "bench"),
        keep: opts.keep,
        keepMongo: sopts.borrowedMongo ?? false,
        ferretdbDatabase,
      });
      const s: Scenario = { name, world, overrides: world.settings, config: world.config, databases };
      scenarios.push(s);
      return s;
    },
    async dispose(s) {
      const i = scenarios.indexOf(s);
      if (i !== -1) scenarios.splice(i, 1);
      await s.world.teardown();
    },
    trackQueue(name) {
      extraQueues.push(name);
    },
    async cleanup() {
      for (const s of scenarios.splice(0)) await s.world.teardown();
      if (!opts.keep) {
        await deleteQueues(base, extraQueues);
        await dropRun(prefix).catch((err) => progress(`cleanup databases: ${(err as Error).message}`));
      }
      await redis.quit().catch(() => undefined);
      await mongo.close().catch(() => undefined);
    },
  };
}

async function deleteQueues(base: Config, queues: string[]): Promise<void> {
  if (queues.length === 0) return;
  const conn = await amqp.connect(base.broker.url).catch(() => undefined);
  for (const q of queues) {
    const ch = await conn?.createChannel();
    ch?.on("error", () => undefined);
    await ch?.deleteQueue(q).catch(() => undefined);
    await ch?.close().catch(() => undefined);
  }
  await conn?.close().catch(() => undefined);
}
