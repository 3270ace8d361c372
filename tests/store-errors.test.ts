// Which failed store writes reject one message and which hold the batch, on PostgreSQL's own errors.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { readConfig } from "../common/config.ts";
import { refusalOf, StoreRefused, writeIsolating } from "../consumer/src/store-errors.ts";

const url = readConfig().databases.endput.replace(/\/[^/]*$/, "/postgres");
let client: pg.Client;
beforeAll(async () => {
  client = new pg.Client({ connectionString: url });
  await client.connect();
});
afterAll(async () => {
  await client.end();
});

/** The error PostgreSQL raises for `sql`, through pg as the consumer writes the endput. */
async function errorOf(sql: string): Promise<unknown> {
  const caught = await client.query(sql).catch((e: unknown) => e);
  expect(caught).toBeInstanceOf(Error);
  return caught;
}

describe("store errors", () => {
  it.each([
    ["select 'x'::int", "22P02"],
    ["select 99999999999::int", "22003"],
    ["select 1/0", "22012"],
  ])("refuses the data exception of %s", async (sql, code) => {
    expect(refusalOf("endput", await errorOf(sql))?.code).toBe(code);
  });

  it("refuses integrity violations and holds on everything else", async () => {
    await client.query("create temp table t (a int check (a > 0))");
    const checkViolation = await errorOf("insert into t values (-1)");
    expect(refusalOf("endput", checkViolation)?.code).toBe("23514");
    await client.query("create temp table short (a varchar(4))");
    const tooLong = await errorOf("insert into short values ('abcdef')");
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
