// Once per fault-suite run: the suite's own services (never the developer's),
// migrated databases, and at the end the report table and a full stop.
import fs from "node:fs";
import path from "node:path";

import { MongoClient } from "mongodb";

import { migrate } from "../../scripts/prisma.ts";
import { clusterServices, LOG_DIR, OUTPUT_DIR, services, URLS } from "./support/fault-services.ts";
import { killLeftovers } from "./support/processes.ts";
import { formatTable, readRows, ROWS_DIR } from "./support/report.ts";

let startedAt = 0;

export async function setup(): Promise<void> {
  startedAt = Date.now();
  const leftovers = killLeftovers();
  if (leftovers.length)
    console.log(`[faults] killed ${leftovers.length} process(es) left by an interrupted run: ${leftovers.join(", ")}`);
  fs.rmSync(ROWS_DIR, { recursive: true, force: true });
  fs.rmSync(LOG_DIR, { recursive: true, force: true });
  fs.mkdirSync(LOG_DIR, { recursive: true });
  // A run that was interrupted may have left the set running: `up` is idempotent.
  await services("up");
  await migrate({ system1: URLS.system1, system2: URLS.system2, endput: URLS.endput });
  // Attempt logs left by an interrupted run.
  const mongo = new MongoClient(URLS.mongo, { serverSelectionTimeoutMS: 10_000 });
  try {
    const { databases } = await mongo.db("admin").admin().listDatabases({ nameOnly: true });
    for (const { name } of databases) if (name.startsWith("faults_")) await mongo.db(name).dropDatabase();
  } finally {
    await mongo.close();
  }
}

export async function teardown(): Promise<void> {
  const rows = readRows();
  const seconds = Math.round((Date.now() - startedAt) / 1000);
  const table = formatTable(rows);
  fs.mkdirSync(OUTPUT_DIR, { recursive: true });
  fs.writeFileSync(
    path.join(OUTPUT_DIR, "report.json"),
    JSON.stringify({ finishedAt: new Date().toISOString(), seconds, rows }, null, 2),
  );
  console.log(`\nFault-injection suite (${seconds} s)\n${table}\n`);
  for (const r of rows) {
    const lines = [...r.notes, ...r.problems.map((p) => `PROBLEM: ${p}`)];
    if (lines.length) console.log(`${r.scenario}. ${r.title}:\n  - ${lines.join("\n  - ")}`);
  }
  console.log(`report: ${path.relative(process.cwd(), path.join(OUTPUT_DIR, "report.json"))}`);
  // The cluster scenarios stop their cluster; this catches one they left after a failure.
  await clusterServices("stop").catch(() => undefined);
  await services("down");
}
