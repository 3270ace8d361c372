// What the attempt-log server is, asked once at collection time so that a test that can only
// run on one kind is counted as skipped on the other (it.runIf / it.skipIf), never as passed.
import { MongoClient } from "mongodb";

import { readConfig } from "../../common/config.ts";

export interface LogServer {
  ferretdb: boolean;
  /** Whether the server creates TTL indexes (expireAfterSeconds). */
  ttlIndexes: boolean;
}

export async function probeLogServer(): Promise<LogServer> {
  const config = readConfig();
  const client = new MongoClient(config.mongo.url, { serverSelectionTimeoutMS: 5000 });
  const db = client.db(`probe_${process.pid}_${Date.now()}`);
  try {
    const info = await client.db("admin").command({ buildInfo: 1 });
    const ttlIndexes = await db
      .collection("ttl_probe")
      .createIndex({ at: 1 }, { expireAfterSeconds: 60 })
      .then(() => true)
      .catch(() => false);
    return { ferretdb: "ferretdbVersion" in info, ttlIndexes };
  } finally {
    await db.dropDatabase().catch(() => undefined);
    await client.close();
  }
}
