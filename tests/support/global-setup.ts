// Once per test run: the services are up, and two template databases carry the
// committed migrations; each test's world copies them under a unique name.
import { execFileSync } from "node:child_process";

import type { TestProject } from "vitest/node";

import { createTemplates, type DbRun, dropRun, newDbRun } from "./world/pg-admin.ts";

declare module "vitest" {
  export interface ProvidedContext {
    dbRun: DbRun;
  }
}

let run: DbRun | undefined;

export async function setup(project: TestProject): Promise<void> {
  execFileSync("scripts/services.sh", ["up"], { stdio: ["ignore", "ignore", "inherit"] });
  run = newDbRun();
  await createTemplates({ source: run.templateSource, endput: run.templateEndput });
  project.provide("dbRun", run);
}

export async function teardown(): Promise<void> {
  if (run) await dropRun(run.prefix);
}
