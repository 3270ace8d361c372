import { readFileSync } from "node:fs";

import { describe, expect, it } from "vitest";

import { printSchemaFile } from "../gateway/src/schema/sdl.ts";

describe("schema.graphql", () => {
  it("matches the Pothos schema (run `make schema` after changing it)", () => {
    const committed = readFileSync(new URL("../schema.graphql", import.meta.url), "utf8");
    expect(printSchemaFile()).toBe(committed);
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
