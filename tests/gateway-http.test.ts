// The gateway over real HTTP: GraphiQL, health, limits and the token.
import type { AddressInfo } from "node:net";

import { afterEach, describe, expect, it } from "vitest";

import { createTestEnv, type Overrides, type TestEnv } from "./support/env.ts";

let env: TestEnv | undefined;
let base = "";
afterEach(async () => {
  await env?.cleanup();
  env = undefined;
});

async function start(overrides: Overrides = {}) {
  env = await createTestEnv(overrides);
  env.gateway.server.listen(0, "127.0.0.1");
  await new Promise((r) => env!.gateway.server.once("listening", r));
  base = `http://127.0.0.1:${(env.gateway.server.address() as AddressInfo).port}`;
  return env;
}

const post = (body: unknown, headers: Record<string, string> = {}) =>
  fetch(`${base}/graphql`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });

describe("gateway over HTTP", () => {
  it("serves GraphiQL, liveness and readiness", async () => {
    await start();
    const page = await fetch(`${base}/graphql`, { headers: { accept: "text/html" } });
    expect(page.status).toBe(200);
    expect(await page.text()).toMatch(/graphiql/i);
    const live = await fetch(`${base}/healthz`);
    expect(await live.json()).toEqual({ status: "ok" });
    const ready = await fetch(`${base}/readyz`);
    expect(ready.status).toBe(200);
    const body = (await ready.json()) as { ready: boolean; checks: { name: string; ok: boolean }[] };
    expect(body.ready).toBe(true);
    expect(body.checks.map((c) => c.name).sort()).toEqual(
      ["mongodb", "postgresql:endput", "postgresql:system1", "postgresql:system2", "rabbitmq", "redis"].sort(),
    );
  });

  it("reports not ready, naming the dependency, when one is down", async () => {
    const e = await start({ ENDPUT_DATABASE_URL: "postgresql://postgres:postgres@127.0.0.1:1/endput" });
    expect(e).toBeDefined();
    const ready = await fetch(`${base}/readyz`);
    expect(ready.status).toBe(503);
    const body = (await ready.json()) as { checks: { name: string; ok: boolean }[] };
    expect(body.checks.find((c) => c.name === "postgresql:endput")?.ok).toBe(false);
    expect(body.checks.find((c) => c.name === "redis")?.ok).toBe(true);
  });

  it("answers bad requests with 4xx or GraphQL errors, never 5xx", async () => {
    await start({ GATEWAY_MAX_DEPTH: "4", GATEWAY_MAX_BODY_BYTES: "2048" });
    const errorsOf = async (res: Response) => {
      expect(res.status).toBeLessThan(500);
      return ((await res.json()) as { errors?: { message: string }[] }).errors ?? [];
    };
    expect((await errorsOf(await post({ query: "{ cursors { system " })))[0]!.message).toMatch(/Syntax Error/);
    expect((await errorsOf(await post({ query: "{ nope }" })))[0]!.message).toMatch(/Cannot query field "nope"/);
    const deep = await post({ query: "{ orders(system: SYSTEM1) { edges { node { history { id } } } } }" });
    const deepBody = (await deep.json()) as { errors: { message: string }[] };
    expect(deep.status).toBeLessThan(500);
    expect(deepBody.errors[0]!.message).toMatch(/depth 5 exceeds the maximum of 4/);
    const nested = 20_000;
    const pathological = await post({ query: `${"{ cursors ".repeat(nested)}{ system }${" }".repeat(nested)}` });
    expect(pathological.status).toBeLessThan(500);
    const pathologicalBody = (await pathological.json()) as { errors: { extensions: { code: string } }[] };
    expect(["QUERY_TOO_DEEP", "PAYLOAD_TOO_LARGE", "GRAPHQL_PARSE_FAILED"]).toContain(
      pathologicalBody.errors[0]!.extensions.code,
    );
    const huge = await post({ query: `{ cursors { system } } # ${"x".repeat(5000)}` });
    expect(huge.status).toBe(413);
    const notJson = await post("{not json");
    expect(notJson.status).toBe(400);
    const badFirst = await post({ query: "{ endputOrders(first: 100000) { totalCount } }" });
    const badFirstBody = (await badFirst.json()) as { errors: { extensions: { code: string } }[] };
    expect(badFirstBody.errors[0]!.extensions.code).toBe("BAD_USER_INPUT");
    // Still serving.
    const ok = await post({ query: "{ cursors { system } }" });
    expect(ok.status).toBe(200);
  });

  it("requires the token for mutations when one is set, and leaves reads open", async () => {
    const token = "s3cret-token-of-enough-length";
    const e = await start({ GATEWAY_TOKEN: token });
    const seed = { query: "mutation { seedOrders(system: SYSTEM1, count: 3) { inserted } }" };
    const anon = (await (await post(seed)).json()) as { errors: { extensions: { code: string } }[] };
    expect(anon.errors[0]!.extensions.code).toBe("UNAUTHENTICATED");
    const wrong = (await (await post(seed, { authorization: "Bearer nope" })).json()) as {
      errors: { extensions: { code: string } }[];
    };
    expect(wrong.errors[0]!.extensions.code).toBe("UNAUTHENTICATED");
    expect(await e.sources.SYSTEM1.order.count()).toBe(0);
    const good = (await (await post(seed, { authorization: `Bearer ${token}` })).json()) as { data: unknown };
    expect(good.data).toEqual({ seedOrders: { inserted: 3 } });
    const read = (await (await post({ query: "{ cursors { pending } }" })).json()) as { data: unknown };
    expect(read.data).toEqual({ cursors: [{ pending: 3 }, { pending: 0 }] });
  });

  it("can require the token for reads too", async () => {
    await start({ GATEWAY_TOKEN: "s3cret-token-of-enough-length", GATEWAY_TOKEN_READS: "true" });
    const read = (await (await post({ query: "{ cursors { pending } }" })).json()) as {
      errors: { extensions: { code: string } }[];
    };
    expect(read.errors[0]!.extensions.code).toBe("UNAUTHENTICATED");
  });
});

describe("gateway metrics and CSRF", () => {
  it("exposes Prometheus metrics with publish counters and queue depths", async () => {
    const e = await start();
    await e.gql(`mutation { seedOrders(system: SYSTEM1, count: 7) { inserted } }`);
    await e.gql(`mutation { publishPending(system: SYSTEM1) { published } }`);
    const text = await (await fetch(`${base}/metrics`)).text();
    expect(text).toMatch(/tentativa_published_total\{system="SYSTEM1"\} 7/);
    expect(text).toContain(`tentativa_queue_messages{queue="${e.broker.topology.primary}"} 7`);
    expect(text).toMatch(/graphql_envelop_request_duration/);
  });

  it("refuses simple cross-site requests without the CSRF header", async () => {
    await start();
    const form = await fetch(`${base}/graphql`, {
      method: "POST",
      headers: { "content-type": "text/plain" },
      body: JSON.stringify({ query: "mutation { seedOrders(system: SYSTEM1, count: 1) { inserted } }" }),
    });
    expect(form.status).toBe(403);
    const get = await fetch(`${base}/graphql?query=${encodeURIComponent("{ cursors { system } }")}`, {
      headers: { accept: "application/json" },
    });
    expect(get.status).toBe(403);
    const withHeader = await fetch(`${base}/graphql?query=${encodeURIComponent("{ cursors { system } }")}`, {
      headers: { accept: "application/json", "x-graphql-yoga-csrf": "1" },
    });
    expect(withHeader.status).toBe(200);
    expect(env!.sources.SYSTEM1).toBeDefined();
    expect(await env!.sources.SYSTEM1.order.count()).toBe(0);
  });
});
