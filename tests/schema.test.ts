import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

import { describe, expect, it } from "vitest";

import { printSchemaFile } from "../gateway/src/schema/sdl.ts";

describe("schema.graphql", () => {
  it("matches the Pothos schema (run `make schema` after changing it)", () => {
    const committed = readFileSync(new URL("../schema.graphql", import.meta.url), "utf8");
    expect(printSchemaFile()).toBe(committed);
  });

  it("is what the clients' operations are typed from (run `npm run schema:types` after changing it)", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "graphql-env-"));
    try {
      const fresh = path.join(dir, "graphql-env.d.ts");
      execFileSync("node_modules/.bin/gql.tada", ["generate-output", "--output", fresh], { stdio: "pipe" });
      const committed = readFileSync(new URL("../gateway/client/graphql-env.d.ts", import.meta.url), "utf8");
      expect(committed).toBe(readFileSync(fresh, "utf8"));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("keeps the contract's names", () => {
    const sdl = printSchemaFile();
    for (const name of [
      "seedOrders(",
      "publishPending(",
      "resetCursor(",
      "orders(",
      "cursors:",
      "messageHistory(",
      "endputOrders(",
      "enum System",
      "enum ProcessingStatus",
      "type OrderConnection",
      "type EndputOrderConnection",
      "processingEvents(",
    ]) {
      expect(sdl).toContain(name);
    }
  });
});
