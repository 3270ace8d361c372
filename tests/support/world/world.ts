// One world on real services, for the tests, the fault suite and the bench: its
// own databases (copies of migrated templates, or shared ones emptied first), AMQP
// names, Redis key prefix and Mongo database, derived from one unique name; the
// clients to read and clean them; the processes it launches. teardown() runs every
// releaser in reverse order of registration: what was started last stops first,
// then the world's names are removed, its clients closed and its databases dropped.
import amqp, { type Channel, type ChannelModel } from "amqplib";
import type { Redis } from "ioredis";
import type { MongoClient } from "mongodb";
import pg from "pg";

import { type Config, type Env, readConfigWith } from "../../../common/config.ts";
import { createMongo, createRedis } from "../../../common/stores.ts";
import { makeTopology, type Topology } from "../../../common/topology.ts";
import { type Child, launch, type LaunchOptions } from "./launcher.ts";
import { createDatabase, dropDatabases, serverUrl, type Templates, withAdmin } from "./pg-admin.ts";

export type Settings = Partial<Record<keyof Env, string>>;

type DatabaseKey = "system1" | "system2" | "endput";

/** Fresh databases named `names`, copied from migrated templates; dropped at teardown. */
export interface CopiedDatabases {
  copyOf: Templates;
  names: Record<DatabaseKey, string>;
}

/** Migrated databases the world does not own (the fault set's): their orders are emptied first, never dropped. */
export interface SharedDatabases {
  shared: Record<DatabaseKey, string>;
}

export interface WorldOptions {
  /** Unique: the AMQP and Redis prefix, and (with `_` for `-`) the Mongo database. */
  name: string;
  databases: CopiedDatabases | SharedDatabases;
  /** Settings on top of the world's names (later ones win). */
  settings?: Settings;
  /** The world's own clients; default those of common/stores.ts. */
  redis?: (config: Config) => Redis;
  mongo?: (config: Config) => MongoClient;
  /** The Mongo database belongs to another world: teardown leaves it. */
  keepMongo?: boolean;
  /** Leave every database, queue, key and document (to inspect them): teardown only closes clients. */
  keep?: boolean;
  /**
   * The PostgreSQL database FerretDB keeps its data in. FerretDB leaves a query running
   * after its client is gone (an abandoned lookup, a sweep of a stopped consumer); it
   * would hold a lock the drop waits for, so teardown cancels those first.
   */
  ferretdbDatabase?: string;
}

export interface World {
  name: string;
  /** Every setting that differs from the process environment's: what a child process gets. */
  settings: Record<string, string>;
  config: Config;
  topology: Topology;
  redis: Redis;
  mongo: MongoClient;
  /** The world's own AMQP connection, to the first node that answers (again after it closed). */
  connection(): Promise<ChannelModel>;
  /** Runs fn on a fresh channel of that connection. */
  withChannel<T>(fn: (ch: Channel) => Promise<T>): Promise<T>;
  /** Registers a releaser; teardown runs them in reverse order of registration. */
  onTeardown(release: () => Promise<unknown>): void;
  /** A gateway or consumer process with the world's settings (and `settings`); stopped at teardown. */
  launch(opts: Omit<LaunchOptions, "settings"> & { settings?: Settings; graceMs?: number }): Promise<Child>;
  teardown(): Promise<void>;
}

export async function createWorld(opts: WorldOptions): Promise<World> {
  const releasers: (() => Promise<unknown>)[] = [];
  const onTeardown = (release: () => Promise<unknown>) => void releasers.push(release);
  const urls = await openDatabases(opts, onTeardown);
  const settings = {
    SYSTEM1_DATABASE_URL: urls.system1,
    SYSTEM2_DATABASE_URL: urls.system2,
    ENDPUT_DATABASE_URL: urls.endput,
    AMQP_PREFIX: opts.name,
    REDIS_PREFIX: opts.name,
    MONGO_DATABASE: opts.name.replace(/-/g, "_"),
    ...(opts.settings as Record<string, string>),
  };
  const config = readConfigWith(settings);
  const topology = makeTopology(config);

  const redis = (opts.redis ?? ((c) => createRedis(c, `world-${opts.name}`)))(config);
  const mongo = (opts.mongo ?? createMongo)(config);
  const amqpConnection = connectionTo(config.broker.urls);
  onTeardown(async () => {
    await amqpConnection.close();
    await mongo.close().catch(() => undefined);
    redis.disconnect();
  });

  const withChannel = async <T>(fn: (ch: Channel) => Promise<T>): Promise<T> => {
    const ch = await (await amqpConnection.get()).createChannel();
    ch.on("error", () => undefined);
    try {
      return await fn(ch);
    } finally {
      await ch.close().catch(() => undefined);
    }
  };
  if (!opts.keep)
    onTeardown(async () => {
      await deleteTopology(withChannel, topology);
      await deleteKeys(redis, `${config.redis.prefix}:*`).catch(() => undefined);
      if (opts.keepMongo) return;
      if (opts.ferretdbDatabase) await cancelFerretdbQueries(opts.ferretdbDatabase, config.mongo.database);
      await mongo
        .db(config.mongo.database)
        .dropDatabase()
        .catch(() => undefined);
    });

  return {
    name: opts.name,
    settings,
    config,
    topology,
    redis,
    mongo,
    connection: amqpConnection.get,
    withChannel,
    onTeardown,
    async launch({ settings: more, graceMs, ...rest }) {
      const child = await launch({ ...rest, settings: { ...settings, ...more } });
      onTeardown(() => child.stop(graceMs));
      return child;
    },
    async teardown() {
      for (const release of releasers.splice(0).reverse()) await release().catch(() => undefined);
    },
  };
}

async function openDatabases(
  opts: WorldOptions,
  onTeardown: (release: () => Promise<unknown>) => void,
): Promise<Record<DatabaseKey, string>> {
  const dbs = opts.databases;
  if ("shared" in dbs) {
    for (const url of Object.values(dbs.shared)) {
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      await client.query("truncate orders restart identity").finally(() => client.end());
    }
    return dbs.shared;
  }
  const { names, copyOf } = dbs;
  await Promise.all([
    createDatabase(names.system1, copyOf.source),
    createDatabase(names.system2, copyOf.source),
    createDatabase(names.endput, copyOf.endput),
  ]);
  if (!opts.keep) onTeardown(() => dropDatabases(Object.values(names)));
  return { system1: serverUrl(names.system1), system2: serverUrl(names.system2), endput: serverUrl(names.endput) };
}

/** One AMQP connection, opened on first use to the first node that answers, again after it closed. */
function connectionTo(urls: readonly string[]): { get(): Promise<ChannelModel>; close(): Promise<void> } {
  let conn: ChannelModel | undefined;
  return {
    async get() {
      if (conn) return conn;
      let c: ChannelModel | undefined;
      let last: unknown;
      for (const url of urls) {
        c = await amqp.connect(url, { timeout: 5000 }).catch((err: unknown) => ((last = err), undefined));
        if (c) break;
      }
      if (!c) throw last;
      c.on("error", () => undefined);
      c.on("close", () => conn === c && (conn = undefined));
      conn = c;
      return c;
    },
    async close() {
      await conn?.close().catch(() => undefined);
    },
  };
}

async function deleteTopology(withChannel: World["withChannel"], topo: Topology): Promise<void> {
  // A missing queue closes the channel it was asked on: one channel per deletion.
  for (const q of [topo.primary, topo.dlq, ...topo.waitQueues.map((w) => w.name)])
    await withChannel((ch) => ch.deleteQueue(q)).catch(() => undefined);
  await withChannel((ch) => ch.deleteExchange(topo.exchange)).catch(() => undefined);
}

export async function deleteKeys(redis: Redis, pattern: string): Promise<number> {
  let cursor = "0";
  let deleted = 0;
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", pattern, "COUNT", 1000);
    cursor = next;
    if (keys.length > 0) deleted += await redis.unlink(...keys);
  } while (cursor !== "0");
  return deleted;
}

async function cancelFerretdbQueries(ferretdbDatabase: string, mongoDatabase: string): Promise<void> {
  await withAdmin((c) =>
    c.query(
      `select pg_cancel_backend(pid) from pg_stat_activity
       where datname = $1 and state = 'active' and pid <> pg_backend_pid() and position($2 in query) > 0`,
      [ferretdbDatabase, `"${mongoDatabase}".`],
    ),
  ).catch(() => undefined);
}
