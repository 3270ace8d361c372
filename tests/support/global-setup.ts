// Once per test run: the services are up, and two template databases carry the
// committed migrations; each test copies them under a unique name.
import { execFileSync } from "node:child_process";

import { migrate } from "../../scripts/prisma.ts";
import { createDatabase, serverUrl, TEMPLATE_ENDPUT, TEMPLATE_SOURCE, TEST_DB_PREFIX, withAdmin } from "./pg-admin.ts";

export async function setup(): Promise<void> {
  execFileSync("scripts/services.sh", ["up"], { stdio: ["ignore", "ignore", "inherit"] });
  await withAdmin(async (c) => {
    const { rows } = await c.query<{ datname: string }>(
      `select datname from pg_database where starts_with(datname, '${TEST_DB_PREFIX}')`,
    );
    for (const { datname } of rows) await c.query(`drop database if exists "${datname}" with (force)`);
    for (const t of [TEMPLATE_SOURCE, TEMPLATE_ENDPUT]) {
      await c.query(`update pg_database set datistemplate = false where datname = '${t}'`).catch(() => undefined);
    }
  });
  await createDatabase(TEMPLATE_SOURCE);
  await createDatabase(TEMPLATE_ENDPUT);
  await createDatabase(`${TEMPLATE_SOURCE}_2`);
  // migrate() wants three databases; the second source copy is only a by-product.
  await migrate({
    system1: serverUrl(TEMPLATE_SOURCE),
    system2: serverUrl(`${TEMPLATE_SOURCE}_2`),
    endput: serverUrl(TEMPLATE_ENDPUT),
  });
  await withAdmin(async (c) => {
    await c.query(`drop database if exists "${TEMPLATE_SOURCE}_2"`);
    for (const t of [TEMPLATE_SOURCE, TEMPLATE_ENDPUT])
      await c.query(`update pg_database set datistemplate = true where datname = '${t}'`);
  });
}

export async function teardown(): Promise<void> {
  await withAdmin(async (c) => {
    const { rows } = await c.query<{ datname: string }>(
      `select datname from pg_database where starts_with(datname, '${TEST_DB_PREFIX}')`,
    );
    for (const { datname } of rows) await c.query(`drop database if exists "${datname}" with (force)`);
  });
}
