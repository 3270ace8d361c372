// `messages` pages that read the whole attempt log. FerretDB sorts in its own process every
// entry a filter matches, so such a page costs it in proportion to the log (seconds of its CPU
// at tens of thousands of entries); a gateway runs at most GATEWAY_LOG_SCANS of them at once,
// refuses the next, and holds the slot until the server has answered, also after the request
// timed out. On MongoDB the pages come from indexes and are not limited.
import { print } from "graphql";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { sleep } from "../common/errors.ts";
import { graphql } from "../gateway/client/graphql.ts";
import { createTestEnv, type TestEnv } from "./support/env.ts";
import { logEntry } from "./support/log-entry.ts";
import { probeLogServer } from "./support/server-kind.ts";
import { typedGql } from "./typed-gql.ts";

const server = await probeLogServer();
let env: TestEnv;
const gql = typedGql(() => env);

/** Shorter than FerretDB's read of the whole log below, longer than a page by order id. */
const REQUEST_TIMEOUT_MS = 500;

beforeAll(async () => {
  env = await createTestEnv({ GATEWAY_REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS) });
  await env.log.ensureIndexes();
  const docs = Array.from({ length: 20_000 }, (_, i) => logEntry({ messageId: `m-${i}`, orderId: i, expiresAt: null }));
  for (let i = 0; i < docs.length; i += 1000) await env.log.collection.insertMany(docs.slice(i, i + 1000));
});

afterAll(async () => {
  await env.cleanup();
});

const PAGE = graphql(`
  query LogPage($status: ProcessingStatus, $orderId: Int) {
    messages(status: $status, orderId: $orderId, first: 2) {
      edges {
        node {
          messageId
        }
      }
    }
  }
`);

const codes = (r: { errors?: readonly { extensions?: Record<string, unknown> }[] }) =>
  (r.errors ?? []).map((e) => e.extensions?.code);

describe("messages pages that read the whole log", () => {
  it.runIf(server.ferretdb)(
    "on FerretDB, run one at a time, refuse another with RATE_LIMITED, and hold the slot until the server answers",
    async () => {
      // Every entry, newest first: FerretDB reads all 20,000 before it answers (about 4 s here).
      const whole = gql(PAGE, {});
      await sleep(150);
      // A page of an absent status reads the whole log too, and finds nothing.
      const other = await env.gateway.yoga.fetch("http://localhost/graphql", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ query: print(PAGE), variables: { status: "REJECTED" } }),
      });
      expect(other.status).toBe(429);
      const refused = (await other.json()) as { errors?: { extensions?: Record<string, unknown> }[] };
      expect(codes(refused)).toEqual(["RATE_LIMITED"]);
      expect(refused.errors?.[0]?.extensions).toMatchObject({ limit: "logScans", logScans: 1 });

      expect(codes(await whole)).toEqual(["REQUEST_TIMEOUT"]);
      // The request gave up; FerretDB is still reading for it.
      expect(codes(await gql(PAGE, { status: "REJECTED" }))).toEqual(["RATE_LIMITED"]);

      // Once it has answered, the next page runs.
      let after = await gql(PAGE, { status: "REJECTED" });
      for (let i = 0; i < 120 && codes(after).includes("RATE_LIMITED"); i++) {
        await sleep(250);
        after = await gql(PAGE, { status: "REJECTED" });
      }
      expect(after.errors).toBeUndefined();
      expect(after.data?.messages.edges).toEqual([]);
    },
  );

  it("pages by order id are looked up, not limited", async () => {
    const pages = await Promise.all([3, 4, 5].map((orderId) => gql(PAGE, { orderId })));
    for (const [i, r] of pages.entries()) {
      expect(r.errors).toBeUndefined();
      expect(r.data?.messages.edges.map((e) => e.node.messageId)).toEqual([`m-${i + 3}`]);
    }
  });

  it.skipIf(server.ferretdb)("on MongoDB, pages of the whole log come from indexes and are not limited", async () => {
    const pages = await Promise.all([gql(PAGE, {}), gql(PAGE, { status: "SUCCEEDED" })]);
    for (const r of pages) {
      expect(r.errors).toBeUndefined();
      expect(r.data?.messages.edges).toHaveLength(2);
    }
  });
});
