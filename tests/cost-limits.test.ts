// What one request may cost: static limits (tokens, aliases, directives, cost) refused
// before any resolver runs, the per-request budget of store calls, and the per-client
// rate and concurrency of the expensive operations.
import { readFileSync } from "node:fs";

import { type DocumentNode, Kind, parse, print, validate } from "graphql";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import * as bench from "../bench/gql.ts";
import { readConfig } from "../common/config.ts";
import { sleep } from "../common/errors.ts";
import type { SourceClients } from "../common/prisma-clients.ts";
import { graphql } from "../gateway/client/graphql.ts";
import * as shared from "../gateway/client/operations.ts";
import * as dashboard from "../gateway/dashboard/src/operations.ts";
import { createGateway } from "../gateway/src/app.ts";
import * as cli from "../gateway/src/cli/operations.ts";
import { createStaticLimits, operationCost } from "../gateway/src/cost-limits.ts";
import { depthLimitRule } from "../gateway/src/limits.ts";
import { createGatewayMetrics } from "../gateway/src/metrics.ts";
import { MAX_CACHED_DOCUMENT_CHARS, withBoundedKeys } from "../gateway/src/parse-cache.ts";
import { createRequestBudget } from "../gateway/src/request-budget.ts";
import { schema } from "../gateway/src/schema/index.ts";
import { createTestEnv, type TestEnv } from "./support/env.ts";
import { typedGql } from "./typed-gql.ts";

const config = readConfig({});

const isDocument = (value: unknown): value is DocumentNode =>
  typeof value === "object" && value !== null && (value as { kind?: unknown }).kind === Kind.DOCUMENT;
const limits = createStaticLimits(config);

/** Every operation our own clients send, with the variables they send it with. */
function clientOperations(): { name: string; query: string; variables?: Record<string, unknown> }[] {
  const ops: { name: string; query: string; variables?: Record<string, unknown> }[] = [];
  const documents = (module: Record<string, unknown>) =>
    Object.entries(module).flatMap(([name, value]) => (isDocument(value) ? [[name, print(value)] as const] : []));
  for (const [name, query] of documents(dashboard))
    ops.push({
      name: `dashboard ${name}`,
      query,
      variables: { first: 20, system: "SYSTEM1", count: 1000, messageId: "x", reason: "max-attempts" },
    });
  // The bench's own and those it shares with the tests and the fault suite.
  for (const [name, query] of [...documents(bench), ...documents(shared)])
    ops.push({ name: `bench ${name}`, query, variables: { system: "SYSTEM1", count: 1000, id: "x" } });
  for (const [name, query] of documents(cli)) ops.push({ name: `cli ${name}`, query });
  const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
  const block = /```graphql\n([\s\S]*?)```/.exec(readme)![1]!;
  for (const line of block.split("\n").filter((l) => l.trim())) ops.push({ name: `README ${line.slice(0, 40)}`, query: line });
  return ops;
}

describe("static limits on our own clients' operations", () => {
  const ops = clientOperations();

  it("covers the dashboard, the CLI, the bench and the README", () => {
    expect(ops.filter((o) => o.name.startsWith("dashboard")).length).toBeGreaterThanOrEqual(8);
    expect(ops.filter((o) => o.name.startsWith("bench")).length).toBeGreaterThanOrEqual(6);
    expect(ops.map((o) => o.name)).toContain("cli WATCH");
    expect(ops.filter((o) => o.name.startsWith("README")).length).toBeGreaterThanOrEqual(10);
  });

  it.each(ops.map((o) => [o.name, o] as const))("%s costs at most a tenth of the limits", (_name, op) => {
    const document = limits.parse(op.query);
    expect(limits.checkShape(schema, document)).toEqual([]);
    expect(limits.checkCost(schema, document, op.variables)).toEqual([]);
    const cost = operationCost(schema, document, config, op.variables);
    expect(cost).toBeGreaterThan(0);
    expect(cost).toBeLessThanOrEqual(config.gateway.maxCost / 10);
    const tight = createStaticLimits(
      readConfig({
        GATEWAY_MAX_TOKENS: String(Math.ceil(config.gateway.maxTokens / 10)),
        GATEWAY_MAX_ALIASES: "3",
        GATEWAY_MAX_DIRECTIVES: "5",
      }),
    );
    expect(tight.checkShape(schema, tight.parse(op.query))).toEqual([]);
  });

  it("prices lists by their page size, history by its documents and store calls by what they query", () => {
    const cost = (q: string) => operationCost(schema, limits.parse(q), config);
    // 1 per field, 10 per store call, a list's selection times its items.
    expect(cost("{ cursors { system } }")).toBe(1 + 10 * 4 + 2 * 1);
    expect(cost("{ orders(system: SYSTEM1, first: 5) { totalCount } }")).toBe(1 + 10 * 2 + 5 * 1);
    expect(cost("{ orders(system: SYSTEM1) { totalCount } }")).toBe(1 + 10 * 2 + 20 * 1);
    const maxAttempts = config.retry.maxAttempts;
    expect(cost("{ orders(system: SYSTEM1, first: 2) { edges { node { history { attempt status } } } } }")).toBe(
      1 + 10 * 2 + 2 * (1 + (1 + (1 + maxAttempts * 2))),
    );
    expect(cost("{ a: cursors { system } b: cursors { system } }")).toBe(2 * cost("{ cursors { system } }"));
  });
});

describe("the depth limit", () => {
  it("walks each fragment once: fragments that spread the next one twice are not walked 2^n times", () => {
    const levels = 20;
    const query = `{ ...F0 } ${Array.from({ length: levels }, (_, i) => `fragment F${i} on Query { ...F${i + 1} ...F${i + 1} }`).join(" ")} fragment F${levels} on Query { cursors { system } }`;
    const started = performance.now();
    expect(validate(schema, parse(query), [depthLimitRule(12)])).toEqual([]);
    const deep = `{ ...F0 } fragment F0 on Query { ...F1 ...F1 } fragment F1 on Query { orders(system: SYSTEM1) { edges { node { history { id } } } } }`;
    expect(validate(schema, parse(deep), [depthLimitRule(4)]).map((e) => e.extensions.code)).toEqual(["QUERY_TOO_DEEP"]);
    // 2^20 walks take seconds; one walk per fragment, milliseconds.
    expect(performance.now() - started).toBeLessThan(1000);
  });
});

describe("refusals through the gateway", () => {
  let env: TestEnv;
  beforeAll(async () => {
    env = await createTestEnv({ GATEWAY_MAX_COST: "200", GATEWAY_RATE_LIMIT_READS: "3", GATEWAY_TOKEN: "t".repeat(32) });
  });
  afterAll(async () => env?.cleanup());

  async function post(query: string, headers: Record<string, string> = {}) {
    const res = await env.gateway.yoga.fetch("http://localhost/graphql", {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/graphql-response+json", ...headers },
      body: JSON.stringify({ query }),
    });
    return {
      status: res.status,
      body: (await res.json()) as { data?: unknown; errors?: { message: string; extensions?: Record<string, unknown> }[] },
    };
  }
  const auth = { authorization: `Bearer ${"t".repeat(32)}` };
  const rows = async () => env.sources.SYSTEM1.order.count();

  it("refuses an operation over GATEWAY_MAX_COST with its cost before any resolver runs", async () => {
    const seeds = Array.from({ length: 10 }, (_, i) => `s${i}: seedOrders(system: SYSTEM1, count: 1) { inserted }`);
    const query = `mutation { ${seeds.join(" ")} }`;
    const expected = operationCost(schema, limits.parse(query), env.config);
    expect(expected).toBeGreaterThan(200);
    const r = await post(query, auth);
    expect(r.status).toBe(400);
    expect(r.body.errors?.[0]?.extensions).toMatchObject({ code: "QUERY_TOO_COSTLY", cost: expected, maxCost: 200 });
    expect(r.body.data).toBeUndefined();
    expect(await rows()).toBe(0);
    // Under the limit, the same field runs.
    const one = await post(`mutation { seedOrders(system: SYSTEM1, count: 1) { inserted } }`, auth);
    expect(one.body).toEqual({ data: { seedOrders: { inserted: 1 } } });
    expect(await rows()).toBe(1);
  });

  it("costs the same document anew with each request's variables", async () => {
    const query = `query ($n: Int) { orders(system: SYSTEM1, first: $n) { edges { node { id } } } }`;
    const send = async (n: number) => {
      const res = await env.gateway.yoga.fetch("http://localhost/graphql", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ query, variables: { n } }),
      });
      return ((await res.json()) as { errors?: { extensions?: { code?: string } }[] }).errors?.[0]?.extensions?.code ?? "ok";
    };
    expect([await send(2), await send(100), await send(2), await send(100)]).toEqual([
      "ok",
      "QUERY_TOO_COSTLY",
      "ok",
      "QUERY_TOO_COSTLY",
    ]);
  });

  it("keeps a document within the limit only for the values its cost reads: defaults, null and directives", async () => {
    const send = async (query: string, variables: Record<string, unknown>) => {
      const res = await env.gateway.yoga.fetch("http://localhost/graphql", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ query, variables }),
      });
      return ((await res.json()) as { errors?: { extensions?: { code?: string } }[] }).errors?.[0]?.extensions?.code ?? "ok";
    };
    // null is a page of the default size; an absent variable takes its default of 100.
    const withDefault = `query ($n: Int = 100, $id: ID!) {
      orders(system: SYSTEM1, first: $n) { edges { node { id } } }
      messageHistory(messageId: $id) { id }
    }`;
    const id = "00000000-0000-4000-8000-000000000000";
    expect([await send(withDefault, { n: null, id }), await send(withDefault, { id })]).toEqual(["ok", "QUERY_TOO_COSTLY"]);
    // Another value of a variable the cost does not read keeps the answer.
    expect(await send(withDefault, { n: 2, id: id.replace(/0$/, "1") })).toBe("ok");
    // @include decides whether a costly field counts.
    const included = `query ($big: Boolean!) {
      small: orders(system: SYSTEM1, first: 2) { edges { node { id } } }
      large: orders(system: SYSTEM1, first: 100) @include(if: $big) { edges { node { id } } }
    }`;
    expect([await send(included, { big: false }), await send(included, { big: true })]).toEqual(["ok", "QUERY_TOO_COSTLY"]);
  });

  it("refuses too many tokens, aliases or directives, and fragments that multiply, each with a code", async () => {
    const { maxTokens, maxAliases, maxDirectives } = env.config.gateway;
    const aliases = (n: number) =>
      `{ ${Array.from({ length: n }, (_, i) => `a${i}: __type(name: "Query") { name }`).join(" ")} }`;
    const cases: [string, string][] = [
      [`{ ${Array.from({ length: 4000 }, (_, i) => `a${i}: cursors { system }`).join(" ")} }`, "TOO_MANY_TOKENS"],
      [`{ cursors { system }${" __typename".repeat(maxTokens)} }`, "TOO_MANY_TOKENS"],
      [aliases(maxAliases + 1), "TOO_MANY_ALIASES"],
      [`{ __typename ${"@include(if: true) ".repeat(maxDirectives + 1)}}`, "TOO_MANY_DIRECTIVES"],
      [
        // Each fragment spreads the next twice: 2^30 fields from 30 short lines.
        `{ ...F0 } ${Array.from({ length: 30 }, (_, i) => `fragment F${i} on Query { ...F${i + 1} ...F${i + 1} }`).join(" ")} fragment F30 on Query { __typename }`,
        "QUERY_TOO_COSTLY",
      ],
    ];
    for (const [query, code] of cases) {
      const started = performance.now();
      const r = await post(query);
      expect({ code: r.body.errors?.[0]?.extensions?.code, status: r.status }, JSON.stringify(r.body).slice(0, 300)).toEqual({
        code,
        status: 400,
      });
      expect(performance.now() - started).toBeLessThan(1000);
    }
    expect((await post(aliases(maxAliases))).body.errors).toBeUndefined();
  });

  it("limits pipelineStats per client: the fourth in the window is RATE_LIMITED, another client is not", async () => {
    const query = "{ pipelineStats { systems { system } } }";
    for (let i = 0; i < 3; i++) expect((await post(query)).body.errors).toBeUndefined();
    // Reached through a fragment, the field counts the same.
    const refused = await post("{ ...S } fragment S on Query { pipelineStats { systems { system } } }");
    expect(refused.status).toBe(429);
    expect(refused.body.errors?.[0]?.extensions?.code).toBe("RATE_LIMITED");
    // The token's holders are another client.
    expect((await post(query, auth)).body.errors).toBeUndefined();
  });

  it("computes cursors and pipelineStats once per request, however many aliases ask for them", async () => {
    let counts = 0;
    const counting = (client: SourceClients["SYSTEM1"]) =>
      client.$extends({
        query: {
          order: {
            count({ args, query }) {
              counts++;
              return query(args);
            },
          },
        },
      }) as unknown as SourceClients["SYSTEM1"];
    const gateway = createGateway({
      config: { ...env.config, gateway: { ...env.config.gateway, maxCost: 100_000, rateLimitReads: 1000 } },
      logger: env.logger,
      sources: { SYSTEM1: counting(env.sources.SYSTEM1), SYSTEM2: counting(env.sources.SYSTEM2) },
      endput: env.endput,
      redis: env.redis,
      broker: env.broker,
      log: env.log,
      pubsub: { subscribe: () => (async function* () {})() } as never,
      metrics: createGatewayMetrics({ broker: env.broker, redis: env.redis, config: env.config, sources: env.sources }),
    });
    try {
      const ask = async (query: string) => {
        counts = 0;
        const res = await gateway.yoga.fetch("http://localhost/graphql", {
          method: "POST",
          headers: { "content-type": "application/json", ...auth },
          body: JSON.stringify({ query }),
        });
        return { body: (await res.json()) as { data?: Record<string, unknown>; errors?: unknown }, counts };
      };
      const one = await ask("{ cursors { system pending } }");
      const many = await ask(`{ ${Array.from({ length: 10 }, (_, i) => `c${i}: cursors { system pending }`).join(" ")} }`);
      expect(one.counts).toBe(2);
      expect(many.body.errors).toBeUndefined();
      expect(many.counts).toBe(2);
      expect(new Set(Object.values(many.body.data!).map((v) => JSON.stringify(v))).size).toBe(1);
      const stats = await ask(
        `{ ${Array.from({ length: 5 }, (_, i) => `s${i}: pipelineStats { systems { sourceRows } }`).join(" ")} }`,
      );
      expect(stats.body.errors).toBeUndefined();
      expect(stats.counts).toBe(2);
    } finally {
      await gateway.close(0);
    }
  });

  it("runs at most GATEWAY_CLIENT_CONCURRENCY expensive operations of one client at once", async () => {
    const local = await createTestEnv({ GATEWAY_CLIENT_CONCURRENCY: "1" });
    const blocker = new pg.Client({ connectionString: local.config.databases.system1 });
    await blocker.connect();
    try {
      // Hold the orders table so a seed waits inside its resolver.
      await blocker.query("begin; lock table orders in exclusive mode");
      const gql = typedGql(() => local);
      const seeding = gql(
        graphql(`
          mutation {
            seedOrders(system: SYSTEM1, count: 5) {
              inserted
            }
          }
        `),
      );
      const waiting = async () =>
        (await blocker.query(`select count(*)::int as n from pg_locks where not granted and relation = 'orders'::regclass`))
          .rows[0].n as number;
      for (let i = 0; i < 200 && (await waiting()) === 0; i++) await new Promise((r) => setTimeout(r, 25));
      expect(await waiting()).toBeGreaterThan(0);
      const second = await gql(graphql("{ deadLetters { messageId } }"));
      expect(second.errors?.[0]?.extensions?.code).toBe("RATE_LIMITED");
      // Reached through a fragment, it is the same operation.
      const spread = await gql(graphql("query { ...Letters } fragment Letters on Query { deadLetters { messageId } }"));
      expect(spread.errors?.[0]?.extensions?.code).toBe("RATE_LIMITED");
      // Cheap operations are not counted.
      expect((await gql(graphql("{ cursors { system } }"))).errors).toBeUndefined();
      await blocker.query("commit");
      expect((await seeding).data).toEqual({ seedOrders: { inserted: 5 } });
      expect((await gql(graphql("{ deadLetters { messageId } }"))).errors).toBeUndefined();
    } finally {
      await blocker.end();
      await local.cleanup();
    }
  });
});

describe("the parse cache", () => {
  it("keeps no document longer than MAX_CACHED_DOCUMENT_CHARS: distinct megabyte documents must not fill the heap", () => {
    const kept = new Map<string, number>();
    const cache = withBoundedKeys<number>({ get: (k) => kept.get(k), set: (k, v) => void kept.set(k, v) });
    const short = "{ cursors { system } }";
    const long = `{ cursors { system } }${" ".repeat(MAX_CACHED_DOCUMENT_CHARS)}`;
    cache.set(short, 1);
    cache.set(long, 2);
    expect([cache.get(short), cache.get(long), kept.size]).toEqual([1, undefined, 1]);
  });
});

describe("the per-request budget", () => {
  it("runs at most `concurrency` store calls at once", async () => {
    const budget = createRequestBudget({ concurrency: 3, timeoutMs: 10_000 });
    let running = 0;
    let most = 0;
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        budget.run("postgresql", async () => {
          most = Math.max(most, ++running);
          await sleep(5);
          running--;
          return i;
        }),
      ),
    );
    expect(results).toEqual(Array.from({ length: 20 }, (_, i) => i));
    expect(most).toBe(3);
  });

  it("refuses with REQUEST_TIMEOUT a call still running or waiting at the deadline, and any call after it", async () => {
    const budget = createRequestBudget({ concurrency: 1, timeoutMs: 100 });
    const [slow, queued] = await Promise.allSettled([
      budget.run("postgresql", () => sleep(1000)),
      budget.run("postgresql", async () => "never"),
    ]);
    for (const r of [slow, queued])
      expect(r).toMatchObject({ status: "rejected", reason: { extensions: { code: "REQUEST_TIMEOUT" } } });
    await expect(budget.run("redis", async () => 1)).rejects.toMatchObject({ extensions: { code: "REQUEST_TIMEOUT" } });
  });

  it("answers a memoised key once per request", async () => {
    const budget = createRequestBudget({ concurrency: 2, timeoutMs: 10_000 });
    let calls = 0;
    const compute = () => budget.run("redis", async () => ++calls);
    expect(await Promise.all([budget.once("k", compute), budget.once("k", compute), budget.once("k", compute)])).toEqual([
      1, 1, 1,
    ]);
    expect(calls).toBe(1);
  });
});
