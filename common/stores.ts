// Factories for the store clients. Each process's main() creates them once and
// hands them to the components; whoever creates a client closes it. The Prisma clients, which
// only the gateway uses, are in prisma-clients.ts: the consumer does not load them.
import { Redis } from "ioredis";
import { MongoClient } from "mongodb";
import pg from "pg";

import type { Config } from "./config.ts";

/**
 * The consumer's endput writer: one multi-row statement per batch needs no ORM, and Prisma's
 * raw-query path cost the consumer a sixth of its CPU per order (BENCHMARKS.md). A client that
 * fails while idle (the server restarted) is dropped from the pool and reported, never thrown.
 */
export function createEndputPool(config: Config, onIdleError: (err: Error) => void): pg.Pool {
  const pool = new pg.Pool({
    connectionString: config.databases.endput,
    max: config.databases.poolSize,
    connectionTimeoutMillis: 5000,
  });
  pool.on("error", onIdleError);
  return pool;
}

export function createRedis(config: Config, name: string): Redis {
  return new Redis(config.redis.url, {
    connectionName: name,
    maxRetriesPerRequest: 2,
    retryStrategy: (times) => Math.min(times * 100, 2000),
  });
}

export function createMongo(config: Config): MongoClient {
  return new MongoClient(config.mongo.url, {
    // Operations beyond this wait in the driver: FerretDB stalls for good when more operations
    // than its PostgreSQL pool holds (pool_max_conns) reach it at once.
    maxPoolSize: config.mongo.maxPoolSize,
    serverSelectionTimeoutMS: 5000,
    connectTimeoutMS: 5000,
    appName: "tentativa",
  });
}
