// Lookup indexes for the attempt log on FerretDB's PostgreSQL backend.
//
// FerretDB keeps its indexes but does not use them for queries: it pushes a
// top-level equality down as `_jsonb->'field' @> value`, which only a GIN index
// on that expression serves, and filters everything else (ranges, $in, sorts) in
// its own process. Its btree indexes still cost every insert and update; the
// attempt log creates there only the unique one that makes claims exclusive.
// Given its PostgreSQL backend, add GIN indexes so that messageHistory and
// Order.history stop scanning the whole log.
//
// FerretDB also names a filter's field in a parameter (`_jsonb->$1 @> $2`, one prepared
// statement for every single-field equality). PostgreSQL may keep a generic plan for a
// statement after five runs, and a generic plan cannot use an index on one field's
// expression: once a connection has run a few lookups by an unindexed field (messages by
// status or system, which scan), its messageId lookups would scan the log as well. So the
// backend database plans every statement with its values (plan_cache_mode).
import type { Db } from "mongodb";
import pg from "pg";

import { errorMessage } from "./errors.ts";
import type { Logger } from "./logger.ts";

/** PostgreSQL's minimum: lookups then never scan more than 64 kB of unmerged entries. */
const GIN_PENDING_LIST_KB = 64;

/** Whether `db` is served by FerretDB rather than MongoDB (one buildInfo round trip). */
export async function isFerretDB(db: Db): Promise<boolean> {
  const info = await db.admin().command({ buildInfo: 1 });
  return "ferretdbVersion" in info;
}

const PLAN_WITH_VALUES = "plan_cache_mode=force_custom_plan";

/** Whether the connected database has PLAN_WITH_VALUES for every role. */
async function hasPlanWithValues(client: pg.Client): Promise<boolean> {
  const { rows } = await client.query(
    `select 1 from pg_db_role_setting s join pg_database d on d.oid = s.setdatabase
      where d.datname = current_database() and s.setrole = 0 and $1 = any(s.setconfig)`,
    [PLAN_WITH_VALUES],
  );
  return rows.length > 0;
}

/**
 * Sets PLAN_WITH_VALUES on FerretDB's backend database; its connections opened from then on plan
 * with values. Never throws: the lookup indexes are worth adding either way.
 */
async function setPlanWithValues(client: pg.Client, logger: Logger): Promise<void> {
  try {
    if (await hasPlanWithValues(client)) return;
    const database = (await client.query<{ name: string }>("select current_database() as name")).rows[0]!.name;
    await client.query(`alter database ${pg.escapeIdentifier(database)} set ${PLAN_WITH_VALUES}`);
    logger.info(
      { database },
      "FerretDB's backend now plans each statement with its values (plan_cache_mode); connections FerretDB opened before keep their plans until it reconnects",
    );
  } catch (err) {
    // Another process starting at the same time may have set it first.
    if (await hasPlanWithValues(client).catch(() => false)) return;
    logger.warn(
      { err: errorMessage(err) },
      `could not set ${PLAN_WITH_VALUES} on the FerretDB backend; put it in FerretDB's PostgreSQL URL, or its lookups may scan the log`,
    );
  }
}

/** Adds GIN lookup indexes on `fields` of `collection`, for a `db` served by FerretDB over `backendUrl`. */
export async function indexFerretBackend(opts: {
  db: Db;
  collection: string;
  fields: readonly string[];
  backendUrl: string | undefined;
  logger: Logger;
}): Promise<void> {
  const { db, logger } = opts;
  if (!opts.backendUrl) return;
  const client = new pg.Client({ connectionString: opts.backendUrl, connectionTimeoutMillis: 3000 });
  try {
    await client.connect();
    await setPlanWithValues(client, logger);
    const schema = db.databaseName;
    const found = await client.query<{ table: string }>(
      `select _jsonb->>'table' as table from ${pg.escapeIdentifier(schema)}._ferretdb_database_metadata where _jsonb->>'_id' = $1`,
      [opts.collection],
    );
    const table = found.rows[0]?.table;
    if (!table) return;
    const qualified = (name: string) => `${pg.escapeIdentifier(schema)}.${pg.escapeIdentifier(name)}`;
    for (const field of opts.fields) {
      const index = `${table}_${field.toLowerCase()}_lookup`;
      await client.query(
        `create index if not exists ${pg.escapeIdentifier(index)} on ${qualified(table)} using gin ((_jsonb->${pg.escapeLiteral(field)}) jsonb_path_ops)`,
      );
      // A lookup reads the whole list of entries not yet merged into the index: at the default
      // 4 MB, while the log is written, it took 1.1 ms of PostgreSQL per dead-letter retention,
      // 0.2 ms at the 64 kB minimum (BENCHMARKS.md). Set on indexes made before too.
      await client.query(`alter index ${qualified(index)} set (gin_pending_list_limit = ${GIN_PENDING_LIST_KB})`);
    }
    logger.info({ table: `${schema}.${table}` }, "lookup indexes ensured on the FerretDB backend");
  } catch (err) {
    logger.warn(
      { err: errorMessage(err) },
      "could not add lookup indexes on the FerretDB backend; log lookups scan the collection",
    );
  } finally {
    await client.end().catch(() => undefined);
  }
}
