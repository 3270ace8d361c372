// Once per test run: the services are up, and two template databases carry the
// committed migrations; each test copies them under a unique name.
import { execFileSync } from "node:child_process";

import type { TestProject } from "vitest/node";

import { migrate } from "../../scripts/prisma.ts";
import { createDatabase, type DbRun, dropRun, newDbRun, serverUrl, withAdmin } from "./pg-admin.ts";

declare module "vitest" {
  export interface ProvidedContext {
    dbRun: DbRun;
  }
}

let run: DbRun | undefined;

export async function setup(project: TestProject): Promise<void> {
  execFileSync("scripts/services.sh", ["up"], { stdio: ["ignore", "ignore", "inherit"] });
  run = newDbRun();
  const spare = `${run.prefix}tpl_spare`;
  await Promise.all([createDatabase(run.templateSource), createDatabase(run.templateEndput), createDatabase(spare)]);
  // migrate() wants three databases; the spare source copy is only a by-product.
  await migrate({ system1: serverUrl(run.templateSource), system2: serverUrl(spare), endput: serverUrl(run.templateEndput) });
  await withAdmin(async (c) => {
    await c.query(`drop database if exists "${spare}"`);
    for (const t of [run!.templateSource, run!.templateEndput])
      await c.query("update pg_database set datistemplate = true where datname = $1", [t]);
  });
  project.provide("dbRun", run);
}

export async function teardown(): Promise<void> {
  if (run) await dropRun(run.prefix);
}
