// Database administration for tests: template databases migrated once per run,
// and cheap per-test copies of them.
import pg from "pg";

import { readConfig } from "../../common/config.ts";

export const TEMPLATE_SOURCE = "tentativa_tpl_source";
export const TEMPLATE_ENDPUT = "tentativa_tpl_endput";
export const TEST_DB_PREFIX = "tentativa_t_";

export function serverUrl(database: string): string {
  const url = new URL(readConfig().databases.system1);
  url.pathname = `/${database}`;
  return url.toString();
}

export async function withAdmin<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: serverUrl("postgres") });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

export async function createDatabase(name: string, template?: string): Promise<void> {
  await withAdmin(async (c) => {
    await c.query(`drop database if exists "${name}" with (force)`);
    await c.query(`create database "${name}"${template ? ` template "${template}"` : ""}`);
  });
}

export async function dropDatabases(names: string[]): Promise<void> {
  await withAdmin(async (c) => {
    for (const name of names) await c.query(`drop database if exists "${name}" with (force)`);
  });
}
