// Database administration for the worlds: template databases migrated once per
// run, and cheap per-world copies of them. Every database of a run starts with
// the run's prefix, so concurrent runs on one server never touch each other's.
import pg from "pg";

import { readConfig } from "../../../common/config.ts";
import { migrate } from "../../../scripts/prisma.ts";

export interface Templates {
  source: string;
  endput: string;
}

export interface DbRun {
  prefix: string;
  templateSource: string;
  templateEndput: string;
}

export function newDbRun(): DbRun {
  const prefix = `tentativa_r${Math.random().toString(16).slice(2, 10)}_`;
  return { prefix, templateSource: `${prefix}tpl_source`, templateEndput: `${prefix}tpl_endput` };
}

/** The URL of `database` on the server of the configured databases. */
export function serverUrl(database: string): string {
  const url = new URL(readConfig().databases.system1);
  url.pathname = `/${database}`;
  return url.toString();
}

export async function withPg<T>(database: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: serverUrl(database) });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

export const withAdmin = <T>(fn: (client: pg.Client) => Promise<T>) => withPg("postgres", fn);

export async function createDatabase(name: string, template?: string): Promise<void> {
  await withAdmin(async (c) => {
    await c.query(`drop database if exists "${name}" with (force)`);
    await c.query(`create database "${name}"${template ? ` template "${template}"` : ""}`);
  });
}

/** Creates the two template databases and applies the committed migrations to them. */
export async function createTemplates(t: Templates): Promise<void> {
  const spare = `${t.source}_spare`;
  await Promise.all([createDatabase(t.source), createDatabase(t.endput), createDatabase(spare)]);
  // migrate() wants three databases; the spare source copy is only a by-product.
  await migrate({ system1: serverUrl(t.source), system2: serverUrl(spare), endput: serverUrl(t.endput) });
  await withAdmin(async (c) => {
    await c.query(`drop database if exists "${spare}"`);
    for (const name of [t.source, t.endput])
      await c.query("update pg_database set datistemplate = true where datname = $1", [name]);
  });
}

export async function dropDatabases(names: string[]): Promise<void> {
  await withAdmin(async (c) => {
    for (const name of names) await c.query(`drop database if exists "${name}" with (force)`);
  });
}

/** Drops every database whose name starts with `prefix`, templates included. */
export async function dropRun(prefix: string): Promise<void> {
  await withAdmin(async (c) => {
    const { rows } = await c.query<{ datname: string }>("select datname from pg_database where starts_with(datname, $1)", [
      prefix,
    ]);
    for (const { datname } of rows) {
      await c.query("update pg_database set datistemplate = false where datname = $1", [datname]);
      await c.query(`drop database if exists "${datname}" with (force)`);
    }
  });
}
