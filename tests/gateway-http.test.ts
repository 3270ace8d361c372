// The gateway over real HTTP: GraphiQL, health, limits, the token and shutdown.
import { existsSync } from "node:fs";
import http from "node:http";
import net, { type AddressInfo } from "node:net";

import { createClient } from "graphql-ws";
import { afterEach, describe, expect, it } from "vitest";
import WebSocket from "ws";

import { cursorKey, publishLockKey } from "../common/keys.ts";
import { graphql } from "../gateway/client/graphql.ts";
import { OPERATION_NAMES_KEPT, OTHER_OPERATIONS } from "../gateway/src/graphql-metrics.ts";
import { bodyForYoga, MAX_JSON_DEPTH } from "../gateway/src/limits.ts";
import { createTestEnv, LOG_DIR, type Overrides, serveGateway, type TestEnv, waitFor } from "./support/env.ts";
import { autogroupOf, niceOf, sessionOf } from "./support/scheduling.ts";
import { launch } from "./support/world/launcher.ts";
import { typedGql } from "./typed-gql.ts";

let env: TestEnv | undefined;
let base = "";
afterEach(async () => {
  await env?.cleanup();
  env = undefined;
});

async function start(overrides: Overrides = {}) {
  env = await createTestEnv(overrides);
  ({ base } = await serveGateway(env));
  return env;
}

const json = { "content-type": "application/json" };

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
    await start({ ENDPUT_DATABASE_URL: "postgresql://postgres:postgres@127.0.0.1:1/endput" });
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

  it("counts the bytes of a chunked body: refuses one over the limit as it arrives, serves one under it", async () => {
    const limit = 4096;
    const e = await start({ GATEWAY_MAX_BODY_BYTES: String(limit) });
    const { port } = e.gateway.server.address() as AddressInfo;
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      // Over the limit: 1 KiB writes without Content-Length, until the answer arrives.
      const over = await new Promise<{ status: number; body: string; sentBeforeAnswer: number }>((resolve, reject) => {
        let sent = 0;
        let answered = false;
        const req = http.request({ port, host: "127.0.0.1", method: "POST", path: "/graphql", headers: json, agent });
        req.on("error", reject);
        req.on("response", (res) => {
          answered = true;
          const sentBeforeAnswer = sent;
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () =>
            resolve({
              status: res.statusCode!,
              body: Buffer.concat(chunks).toString(),
              sentBeforeAnswer,
            }),
          );
          req.end();
        });
        req.write(`{"query":"{ cursors { system } } #`);
        const chunk = "x".repeat(1024);
        const pump = () => {
          if (answered) return;
          if (sent > 256 * limit) return void req.end('"}');
          req.write(chunk, () => setImmediate(pump));
          sent += chunk.length;
        };
        pump();
      });
      expect(over.status).toBe(413);
      expect(JSON.parse(over.body)).toEqual({
        errors: [{ message: `request body exceeds ${limit} bytes`, extensions: { code: "PAYLOAD_TOO_LARGE" } }],
      });
      // Answered once the limit was passed, not after the whole body.
      expect(over.sentBeforeAnswer).toBeGreaterThan(limit);
      expect(over.sentBeforeAnswer).toBeLessThan(64 * limit);

      // Under the limit, in several writes: served, on the same keep-alive connection.
      const under = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = http.request({ port, host: "127.0.0.1", method: "POST", path: "/graphql", headers: json, agent }, (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks).toString() }));
        });
        req.on("error", reject);
        const body = JSON.stringify({ query: `{ cursors { system } } # ${"y".repeat(limit - 200)}` });
        expect(Buffer.byteLength(body)).toBeLessThanOrEqual(limit);
        for (let i = 0; i < body.length; i += 500) req.write(body.slice(i, i + 500));
        req.end();
      });
      expect(under.status).toBe(200);
      expect(JSON.parse(under.body)).toEqual({ data: { cursors: [{ system: "SYSTEM1" }, { system: "SYSTEM2" }] } });
    } finally {
      agent.destroy();
    }
    // Still serving.
    expect((await post({ query: "{ cursors { system } }" })).status).toBe(200);
  });

  it("refuses JSON nested deeper than MAX_JSON_DEPTH before parsing it; brackets inside strings do not count", async () => {
    await start();
    const nested = (depth: number) =>
      `{"query":"{ __typename }","variables":{"v":${"[".repeat(depth - 2)}${"]".repeat(depth - 2)}}}`;
    // The body object and its variables are two levels: 64 in all is served, 65 refused.
    const atLimit = await post(nested(MAX_JSON_DEPTH));
    expect(atLimit.status).toBe(200);
    expect(await atLimit.json()).toEqual({ data: { __typename: "Query" } });
    for (const depth of [MAX_JSON_DEPTH + 1, 200_000]) {
      const r = await post(nested(depth));
      expect(r.status).toBe(400);
      const body = (await r.json()) as { errors: { message: string; extensions: Record<string, unknown> }[] };
      expect(body.errors[0]!.extensions).toEqual({ code: "BAD_REQUEST", maxDepth: MAX_JSON_DEPTH });
      expect(body.errors[0]!.message).toMatch(/more than 64 levels deep/);
    }
    // Brackets and escaped quotes inside strings are text, not structure.
    const inStrings = { query: "{ __typename }", variables: { s: `\\"${"[{".repeat(500)}` } };
    const served = await post(inStrings);
    expect(served.status).toBe(200);
    expect(await served.json()).toEqual({ data: { __typename: "Query" } });
    // A document sent as the body itself is read as one, and limited as one.
    for (const type of ["application/graphql", "application/graphql; charset=utf-8"]) {
      const doc = await post("{ __typename }", { "content-type": type });
      expect(await doc.json(), type).toEqual({ data: { __typename: "Query" } });
    }
    const tokens = await post(`{ ${"__typename ".repeat(50_000)}}`, { "content-type": "application/graphql" });
    const refused = (await tokens.json()) as { errors: { extensions: { code: string } }[] };
    expect(refused.errors[0]!.extensions.code).toBe("TOO_MANY_TOKENS");
  });

  it("keeps reading a refused body to its end, so a client still sending never finds the connection closed", async () => {
    const limit = 4096;
    const e = await start({ GATEWAY_MAX_BODY_BYTES: String(limit) });
    const { port } = e.gateway.server.address() as AddressInfo;
    // A raw chunked request on a `Connection: close` connection: after the 413 has fully
    // arrived the client sends 1 MiB more, then the last chunk.
    const socket = net.connect(port, "127.0.0.1");
    socket.setNoDelay(true);
    let received = "";
    let closedByServerAt: "before-last-chunk" | "after-last-chunk" | undefined;
    let lastChunkSent = false;
    const errors: string[] = [];
    socket.on("data", (d: Buffer) => (received += d.toString()));
    socket.on("end", () => (closedByServerAt ??= lastChunkSent ? "after-last-chunk" : "before-last-chunk"));
    socket.on("error", (err) => errors.push(err.message));
    await new Promise<void>((r) => socket.once("connect", () => r()));
    const chunk = (text: string) => `${Buffer.byteLength(text).toString(16)}\r\n${text}\r\n`;
    socket.write(
      `POST /graphql HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n` +
        chunk(`{"query":"{ cursors { system } } #${"x".repeat(2 * limit)}`),
    );
    await waitFor(
      async () => received,
      (r) => /PAYLOAD_TOO_LARGE"\}\}\]\}(\r\n0\r\n\r\n)?$/.test(r),
    );
    expect(received).toMatch(/^HTTP\/1\.1 413 /);
    for (let i = 0; i < 16; i++) {
      socket.write(chunk("z".repeat(64 * 1024)));
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(closedByServerAt).toBeUndefined();
    lastChunkSent = true;
    socket.write(chunk('"}') + "0\r\n\r\n");
    await waitFor(
      async () => closedByServerAt,
      (c) => c !== undefined,
    );
    expect(closedByServerAt).toBe("after-last-chunk");
    expect(errors).toEqual([]);
    socket.destroy();
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
    const gql = typedGql(() => e);
    await gql(
      graphql(`
        mutation {
          seedOrders(system: SYSTEM1, count: 7) {
            inserted
          }
        }
      `),
    );
    await gql(
      graphql(`
        mutation {
          publishPending(system: SYSTEM1) {
            published
          }
        }
      `),
    );
    const text = await (await fetch(`${base}/metrics`)).text();
    expect(text).toMatch(/tentativa_published_total\{system="SYSTEM1"\} 7/);
    expect(text).toContain(`tentativa_queue_messages{queue="${e.broker.topology.primary}"} 7`);
    expect(text).toMatch(/graphql_envelop_request_duration/);
    // Not the per-phase histograms nor the request summary: a fifth of a trivial request's CPU.
    expect(text).not.toMatch(/graphql_envelop_phase_|graphql_envelop_request_time_summary/);
  });

  it("keeps its metrics' series bounded whatever clients put in URLs, operation names and aliases", async () => {
    await start();
    const csrf = { "x-graphql-yoga-csrf": "1" };
    const extra = 50;
    const inParallel = async (n: number, send: (i: number) => Promise<Response>) => {
      for (let i = 0; i < n; i += 25) {
        const answers = await Promise.all(Array.from({ length: Math.min(25, n - i) }, (_, j) => send(i + j)));
        for (const a of answers) expect(a.status).toBe(200);
      }
    };
    // Every URL its own: a label taken from the URL would make a series per request.
    await inParallel(200, (i) => fetch(`${base}/graphql?query=%7B__typename%7D&n=${i}`, { headers: csrf }));
    // Named operations: the first ones keep their names, in the order the gateway saw them.
    for (let i = 0; i < 5; i++) await post({ query: `query Named${i} { __typename }` });
    await inParallel(OPERATION_NAMES_KEPT + extra, (i) => post({ query: `query Op${i} { __typename }` }));
    // An error's path is made of the client's aliases.
    await inParallel(100, (i) => post({ query: `{ a${i}: messageHistory(messageId: "no-such-${i}") { id } }` }));

    const series = (await (await fetch(`${base}/metrics`)).text()).split("\n").filter((l) => l.startsWith("graphql_"));
    expect(series.filter((l) => /[{,]url="/.test(l))).toEqual([]);
    expect(series.filter((l) => /[{,]path="/.test(l))).toEqual([]);
    const names = new Set(series.map((l) => /operationName="([^"]*)"/.exec(l)?.[1]).filter((n) => n !== undefined));
    expect(names.size).toBeLessThanOrEqual(OPERATION_NAMES_KEPT + 2);
    expect(names).toContain("Named0");
    expect(names).toContain("Anonymous");
    expect(names).toContain(OTHER_OPERATIONS);
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
    expect(await env!.sources.SYSTEM1.order.count()).toBe(0);
  });
});

/** The gateway process itself, on a free port, pointed at this test's databases and names. */
const spawnGateway = (e: TestEnv, more: Overrides = {}, opts: { ownSession?: boolean } = {}) =>
  e.launch("gateway", { GATEWAY_HOST: "127.0.0.1", LOG_LEVEL: "info", ...more }, { timeoutMs: 60_000, ...opts });

describe("gateway CPU priority", () => {
  // Raising a priority needs root (or CAP_SYS_NICE), as CI runs; elsewhere the gateway logs that it could not.
  it.runIf(process.getuid?.() === 0 && existsSync("/proc/self/autogroup"))(
    "runs above the default priority as GATEWAY_NICE says, and raises its session's group only when it leads the session",
    async () => {
      env = await createTestEnv();
      const e = env;
      const ours = autogroupOf(process.pid);
      expect(niceOf(process.pid)).toBe(0);
      // As make start runs it: a session of its own, whose group it raises.
      const alone = await spawnGateway(e);
      expect(sessionOf(alone.pid)).toBe(alone.pid);
      expect(niceOf(alone.pid)).toBe(-5);
      expect(autogroupOf(alone.pid).group).not.toBe(ours.group);
      expect(autogroupOf(alone.pid).nice).toBe(-5);
      // In a session it shares: only its own niceness, never the others' group.
      const shared = await spawnGateway(e, {}, { ownSession: false });
      expect(niceOf(shared.pid)).toBe(-5);
      expect(autogroupOf(shared.pid)).toEqual(ours);
      const equal = await spawnGateway(e, { GATEWAY_NICE: "0" });
      expect(niceOf(equal.pid)).toBe(0);
      expect(autogroupOf(equal.pid).nice).toBe(0);
    },
  );
});

describe("gateway shutdown", () => {
  it("refuses to start on a non-loopback address without a token, and starts when anonymous access is allowed", async () => {
    const refused = await launch({
      kind: "gateway",
      name: "gateway-refused",
      logDir: LOG_DIR,
      settings: { GATEWAY_HOST: "0.0.0.0", GATEWAY_TOKEN: "", GATEWAY_ALLOW_ANONYMOUS: "" },
      ready: false,
    });
    const code = await refused.exited;
    expect(code, refused.output()).toBe(1);
    expect(refused.output()).toMatch(/GATEWAY_HOST=0\.0\.0\.0 is not a loopback address and GATEWAY_TOKEN is not set/);

    const e = (env = await createTestEnv());
    const allowed = await spawnGateway(e, { GATEWAY_HOST: "0.0.0.0", GATEWAY_ALLOW_ANONYMOUS: "true" });
    const seeded = await fetch(`${allowed.url}/graphql`, {
      method: "POST",
      headers: json,
      body: JSON.stringify({ query: "mutation { seedOrders(system: SYSTEM1, count: 2) { inserted } }" }),
    });
    expect(await seeded.json()).toEqual({ data: { seedOrders: { inserted: 2 } } });
    expect(allowed.logs().some((l) => /GATEWAY_ALLOW_ANONYMOUS=true/.test(l.msg))).toBe(true);
  });

  it("on SIGTERM finishes the request in flight, completes subscriptions, then closes the stores and exits 0", async () => {
    const rows = 30_000;
    const e = (env = await createTestEnv());
    await typedGql(() => e)(
      graphql(`
        mutation ($n: Int!) {
          seedOrders(system: SYSTEM1, count: $n) {
            inserted
          }
        }
      `),
      { n: rows },
    );
    const gw = await spawnGateway(e, { GATEWAY_DRAIN_TIMEOUT_MS: "60000", PUBLISH_BATCH_SIZE: "500" });

    // Two live subscriptions, one per transport.
    const sse = await fetch(`${gw.url}/graphql`, {
      method: "POST",
      headers: { ...json, accept: "text/event-stream" },
      body: JSON.stringify({ query: "subscription { processingEvents { messageId } }" }),
    });
    expect(sse.headers.get("content-type")).toMatch(/text\/event-stream/);
    const sseText = sse.text().catch((err: Error) => `failed: ${err.message}`);
    const wsEvents: string[] = [];
    let connected = () => {};
    const wsConnected = new Promise<void>((resolve) => (connected = resolve));
    const ws = createClient({
      url: `ws://127.0.0.1:${gw.port}/graphql`,
      webSocketImpl: WebSocket,
      retryAttempts: 0,
      on: { connected: () => connected(), closed: (event) => wsEvents.push(`closed ${(event as { code: number }).code}`) },
    });
    const wsDone = new Promise<void>((resolve) =>
      ws.subscribe(
        { query: "subscription { processingEvents { messageId } }" },
        {
          next: () => wsEvents.push("next"),
          error: (err) => (wsEvents.push(`error ${String(err)}`), resolve()),
          complete: () => (wsEvents.push("complete"), resolve()),
        },
      ),
    );
    // A connection that has started a request but not finished its headers survives the
    // closing of idle connections: through it the draining gateway's readiness can be read.
    const probe = net.connect(gw.port, "127.0.0.1");
    let probeAnswer = "";
    probe.on("data", (d: Buffer) => (probeAnswer += d.toString()));
    probe.write("GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    await wsConnected;
    // The server sets a subscription up a moment after the client sends it.
    await new Promise((r) => setTimeout(r, 300));

    // The slow request: publish every row, in small batches.
    const publish = fetch(`${gw.url}/graphql`, {
      method: "POST",
      headers: json,
      body: JSON.stringify({ query: "mutation { publishPending(system: SYSTEM1) { published toId } }" }),
    })
      .then(async (r) => ({ status: r.status, body: (await r.json()) as { data?: unknown; errors?: unknown[] } }))
      .catch((err: Error) => ({ status: 0, body: { errors: [err.message] } }));
    await waitFor(
      () => e.redis.exists(publishLockKey(e.config, "SYSTEM1")),
      (n) => n === 1,
    );
    gw.signal("SIGTERM");

    // No new connections, while the publish goes on.
    await waitFor(
      () =>
        fetch(`${gw.url}/healthz`).then(
          () => "accepted",
          () => "refused",
        ),
      (r) => r === "refused",
      5_000,
    );
    probe.write("\r\n");
    await waitFor(
      async () => probeAnswer,
      (a) => /\r\n0\r\n\r\n$/.test(a),
      5_000,
    );
    expect(probeAnswer).toMatch(/^HTTP\/1\.1 503/);
    expect(JSON.parse(/\{.*\}/.exec(probeAnswer)![0])).toMatchObject({ ready: false });
    probe.destroy();

    // The request in flight completes in full.
    const answer = await publish;
    expect(answer).toEqual({ status: 200, body: { data: { publishPending: { published: rows, toId: rows } } } });
    expect(await gw.exited).toBe(0);
    const logs = gw.logs();
    expect(
      logs.find((l) => /draining/.test(l.msg)),
      gw.output(),
    ).toBeDefined();

    // The subscriptions were completed by the server, not cut.
    expect(await sseText).toMatch(/event: complete\s*\ndata:\s*\n/);
    await wsDone;
    expect(wsEvents[0]).toBe("complete");
    await ws.dispose();

    // The stores were closed after the HTTP server, in reverse order of opening, and nothing failed;
    // tracing, started first, stops last, so the spans of the shutdown itself are flushed.
    expect(logs.filter((l) => l.msg === "released").map((l) => l.step)).toEqual([
      "http server",
      "rabbitmq",
      "mongodb",
      "redis subscriber",
      "redis",
      "endput postgresql",
      "source postgresql",
      "tracing",
    ]);
    expect(logs.filter((l) => /release failed|unexpected error|timed out/.test(l.msg))).toEqual([]);
    expect(await e.redis.get(cursorKey(e.config, "SYSTEM1"))).toBe(String(rows));
    expect(await e.queueDepth(e.broker.topology.primary)).toBe(rows);
  }, 180_000);
});

describe("a body read before Yoga", () => {
  // Yoga's adapter would otherwise read it again as a stream: 11 ms of CPU for a refused megabyte.
  const request = (contentType: string) => ({ headers: { "content-type": contentType } }) as http.IncomingMessage;
  // "é" is two bytes in UTF-8; the chunks split it.
  const text = "{ __typename } # é";
  const bytes = Buffer.from(text);
  const at = bytes.indexOf(0xc3) + 1;
  const body = { chunks: [bytes.subarray(0, at), bytes.subarray(at)], bytes: bytes.length };

  it("hands a GraphQL document over as the query Yoga would read from it, decoded across chunks", () => {
    for (const type of ["application/graphql", "application/graphql; charset=utf-8"])
      expect(bodyForYoga(request(type), body), type).toEqual({ query: text });
  });

  it("hands JSON over parsed and any other body as its chunks", async () => {
    const json = Buffer.from(JSON.stringify({ query: text }));
    expect(bodyForYoga(request("application/json"), { chunks: [json], bytes: json.length })).toEqual({ query: text });
    for (const type of ["text/plain", "application/graphql-foo", "application/x-www-form-urlencoded"]) {
      const other = bodyForYoga(request(type), body) as { bytes: number } & AsyncIterable<Buffer>;
      expect(other.bytes, type).toBe(bytes.length);
      const read: Buffer[] = [];
      for await (const chunk of other) read.push(chunk);
      expect(Buffer.concat(read).toString(), type).toBe(text);
    }
  });
});
