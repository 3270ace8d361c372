// Which failed store writes reject one message and which hold the batch, on PostgreSQL's own errors.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { readConfig, readConfigWith } from "../common/config.ts";
import { createEndputClient, type EndputClient } from "../common/stores.ts";
import { refusalOf, StoreRefused, writeIsolating } from "../consumer/src/store-errors.ts";

const url = readConfig().databases.endput.replace(/\/[^/]*$/, "/postgres");
let client: pg.Client;
let prisma: EndputClient;
beforeAll(async () => {
  client = new pg.Client({ connectionString: url });
  await client.connect();
  prisma = createEndputClient(readConfigWith({ ENDPUT_DATABASE_URL: url }));
});
afterAll(async () => {
  await client.end();
  await prisma.$disconnect();
});

/** The error PostgreSQL raises for `sql`, through pg and through Prisma's driver adapter. */
async function errorsOf(sql: string): Promise<unknown[]> {
  const caught = await Promise.all([
    client.query(sql).catch((e: unknown) => e),
    prisma.$executeRawUnsafe(sql).catch((e: unknown) => e),
  ]);
  for (const e of caught) expect(e).toBeInstanceOf(Error);
  return caught;
}

describe("store errors", () => {
  it.each([
    ["select 'x'::int", "22P02"],
    ["select 99999999999::int", "22003"],
    ["select 1/0", "22012"],
  ])("refuses the data exception of %s", async (sql, code) => {
    for (const err of await errorsOf(sql)) expect(refusalOf("endput", err)?.code).toBe(code);
  });

  it("refuses integrity violations and holds on everything else", async () => {
    await client.query("create temp table t (a int check (a > 0))");
    const [checkViolation] = await errorsOf("insert into t values (-1)");
    expect(refusalOf("endput", checkViolation)?.code).toBe("23514");
    await client.query("create temp table short (a varchar(4))");
    const [tooLong] = await errorsOf("insert into short values ('abcdef')");
    expect(refusalOf("endput", tooLong)?.code).toBe("22001");
    // Serialization failures, a server shutting down, a lost connection, a missing table: hold.
    for (const code of ["40001", "40P01", "57P01", "08006", "53300", "42P01"]) {
      expect(refusalOf("endput", Object.assign(new Error("x"), { code }))).toBeUndefined();
    }
    expect(refusalOf("endput", Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }))).toBeUndefined();
    expect(refusalOf("endput", Object.assign(new Error("write EPIPE"), { code: "EPIPE" }))).toBeUndefined();
  });

  it("isolates the refused items of a refused write", async () => {
    const written: number[][] = [];
    const write = async (part: number[]) => {
      written.push(part);
      if (part.some((n) => n < 0)) throw new StoreRefused("endput", "23514", "negative");
    };
    const refused = await writeIsolating([1, -2, 3, -4], write);
    expect([...refused.keys()]).toEqual([1, 3]);
    expect(written).toEqual([[1, -2, 3, -4], [1], [-2], [3], [-4]]);
    await expect(writeIsolating([1], async () => Promise.reject(new Error("down")))).rejects.toThrow("down");
  });
});
