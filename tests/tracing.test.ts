// One trace per order, across every hop: the real gateway and consumer as child processes,
// launched with the tracing preload, export their spans as JSON lines into this test's output
// folder; the test follows one order's trace from the publish through its attempts into the
// endput write, and a dead letter's trace through the redrive into its new round.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { print } from "graphql";
import { afterEach, describe, expect, it } from "vitest";

import { ConfigError, readConfig } from "../common/config.ts";
import type { SpanRecord } from "../common/tracing-sdk.ts";
import { graphql, type ResultOf, type TadaDocumentNode, type VariablesOf } from "../gateway/client/graphql.ts";
import { SEED } from "../gateway/client/operations.ts";
import { fractionOf, orderMessageId } from "../gateway/src/services/message-id.ts";
import { type BrowserSession, listen, openBrowser, poll } from "./support/browser.ts";
import { createTestEnv, type TestEnv, waitFor } from "./support/env.ts";
import { logEntry } from "./support/log-entry.ts";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const OUT = path.join(ROOT, "test-output/tracing");
const MAX_ATTEMPTS = 3;
const TRACE_URL = "http://jaeger.example/trace/{traceId}";

let env: TestEnv | undefined;
let browser: BrowserSession | undefined;
afterEach(async () => {
  await browser?.close();
  browser = undefined;
  await env?.cleanup();
  env = undefined;
});

interface Traced {
  url: string;
  spansFile: string;
  /** SIGTERM, then waits for the exit: the process flushes its spans on the way out. */
  stop(): Promise<void>;
}

/** The process as make start launches it, with tracing into a JSON lines file. */
async function launch(e: TestEnv, script: "gateway" | "consumer"): Promise<Traced> {
  const spansFile = path.join(OUT, `${e.id}-${script}.jsonl`);
  const child = await e.launch(
    script,
    {
      DATABASE_POOL_SIZE: "3",
      MAX_ATTEMPTS: String(MAX_ATTEMPTS),
      RETRY_DELAY_MS: "200",
      GATEWAY_HOST: "127.0.0.1",
      CONSUMER_ID: "traced-consumer",
      LOG_LEVEL: "info",
      LOG_PRETTY: "false",
      OTEL_TRACES_EXPORTER: "file",
      OTEL_TRACES_FILE: spansFile,
      TRACE_URL_TEMPLATE: TRACE_URL,
    },
    { nodeArgs: ["--import", "./common/tracing-preload.ts"], logDir: OUT, name: `${e.id}-${script}` },
  );
  return { url: child.url, spansFile, stop: () => child.stop() };
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
async function gql<D extends TadaDocumentNode<any, any>>(gateway: Traced, document: D, variables?: VariablesOf<D>) {
  const res = await fetch(`${gateway.url}/graphql`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ query: print(document), variables }),
  });
  const body = (await res.json()) as { data?: ResultOf<D>; errors?: unknown };
  expect(body.errors).toBeUndefined();
  return body.data!;
}

const readSpans = (...files: string[]): SpanRecord[] =>
  files.flatMap((f) =>
    fs
      .readFileSync(f, "utf8")
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l) as SpanRecord),
  );

/** The span and its ancestors within the spans read, nearest first. */
function ancestry(spans: SpanRecord[], span: SpanRecord): SpanRecord[] {
  const byId = new Map(spans.map((s) => [s.spanId, s]));
  const chain = [span];
  for (let p = span.parentSpanId; p; p = byId.get(p)?.parentSpanId ?? null) {
    const parent = byId.get(p);
    if (!parent) break;
    chain.push(parent);
  }
  return chain;
}

const HISTORY = graphql(`
  query ($id: ID!) {
    messageHistory(messageId: $id) {
      round
      attempt
      status
      traceId
      traceUrl
    }
  }
`);

describe("tracing settings", () => {
  const unset = { OTEL_EXPORTER_OTLP_ENDPOINT: "", OTEL_TRACES_EXPORTER: "", TRACE_URL_TEMPLATE: "" };
  it("is off unless an exporter or an OTLP endpoint is set", () => {
    expect(readConfig(unset).tracing).toMatchObject({ enabled: false, exporter: "none", urlTemplate: null });
    expect(readConfig({ ...unset, OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318/" }).tracing).toMatchObject({
      enabled: true,
      exporter: "otlp",
      otlpTracesUrl: "http://collector:4318/v1/traces",
    });
    expect(readConfig({ ...unset, OTEL_TRACES_EXPORTER: "console" }).tracing.enabled).toBe(true);
    expect(
      readConfig({ ...unset, OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318", OTEL_TRACES_EXPORTER: "none" }).tracing.enabled,
    ).toBe(false);
  });

  it("wants a trace URL template with {traceId}", () => {
    expect(() => readConfig({ ...unset, TRACE_URL_TEMPLATE: "http://jaeger/trace/" })).toThrow(ConfigError);
    expect(readConfig({ ...unset, TRACE_URL_TEMPLATE: TRACE_URL }).tracing.urlTemplate).toBe(TRACE_URL);
  });
});

describe("tracing", () => {
  it("follows an order in one trace from its publish through every attempt into endput, and a dead letter through its redrive", async () => {
    env = await createTestEnv({ MAX_ATTEMPTS: String(MAX_ATTEMPTS) });
    const e = env;
    fs.mkdirSync(OUT, { recursive: true });
    const [gateway, consumer] = await Promise.all([launch(e, "gateway"), launch(e, "consumer")]);

    // Ids 1..20 are true orders, 21 a false one; requiredAttempts follows from the message id.
    await gql(gateway, SEED, { system: "SYSTEM1", count: 20, ratio: 1 });
    await gql(gateway, SEED, { system: "SYSTEM1", count: 1, ratio: 0 });
    const needs = (id: number) => 1 + Math.floor(fractionOf(orderMessageId("SYSTEM1", id)) * MAX_ATTEMPTS);
    const threeAttempts = Array.from({ length: 20 }, (_, i) => i + 1).find((id) => needs(id) === 3)!;
    expect(threeAttempts).toBeDefined();
    const ordered = orderMessageId("SYSTEM1", threeAttempts);
    const dead = orderMessageId("SYSTEM1", 21);

    await gql(
      gateway,
      graphql(`
        mutation {
          publishPending(system: SYSTEM1) {
            published
          }
        }
      `),
    );
    const history = (id: string) => gql(gateway, HISTORY, { id }).then((d) => d.messageHistory);
    await waitFor(
      () => history(ordered),
      (h) => h.some((a) => a.status === "SUCCEEDED"),
      60_000,
    );
    await waitFor(
      () => history(dead),
      (h) => h.some((a) => a.status === "DEAD_LETTERED"),
      60_000,
    );
    // The DEAD_LETTERED entry is the attempt's claim, logged before the dead letter is forwarded:
    // the redrive below finds it only once the queue holds it.
    await waitFor(
      () => e.queueDepth(e.broker.topology.dlq),
      (n) => n === 1,
      60_000,
    );
    // The dead letter goes round again, and dead-letters again after its attempts.
    const redriven = await gql(
      gateway,
      graphql(`
        mutation ($ids: [ID!]) {
          redriveDeadLetters(messageIds: $ids) {
            moved
          }
        }
      `),
      { ids: [dead] },
    );
    expect(redriven.redriveDeadLetters.moved).toBe(1);
    await waitFor(
      () => history(dead),
      (h) => h.some((a) => a.round === 1 && a.status === "DEAD_LETTERED"),
      60_000,
    );
    const orderedHistory = await history(ordered);
    const deadHistory = await history(dead);
    await Promise.all([gateway.stop(), consumer.stop()]);
    const spans = readSpans(gateway.spansFile, consumer.spansFile);

    // Every log entry of the order carries one trace id, and the timeline's link to it.
    const traceId = orderedHistory[0]!.traceId!;
    expect(traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(orderedHistory.map((a) => [a.attempt, a.status, a.traceId, a.traceUrl])).toEqual([
      [1, "RETRY_SCHEDULED", traceId, TRACE_URL.replace("{traceId}", traceId)],
      [2, "RETRY_SCHEDULED", traceId, TRACE_URL.replace("{traceId}", traceId)],
      [3, "SUCCEEDED", traceId, TRACE_URL.replace("{traceId}", traceId)],
    ]);

    // That trace: the publish, linked to its batch, then the three attempts in order, each
    // descending from the publish, and the endput write under the attempt that succeeded.
    const trace = spans.filter((s) => s.traceId === traceId);
    const publish = trace.filter((s) => s.name === "publish order");
    expect(publish).toHaveLength(1);
    expect(publish[0]).toMatchObject({ service: "tentativa-gateway", parentSpanId: null });
    expect(publish[0]!.attributes).toMatchObject({ "tentativa.message_id": ordered, "tentativa.order_id": threeAttempts });
    const batch = spans.find((s) => s.spanId === publish[0]!.links[0]?.spanId);
    expect(batch).toMatchObject({ name: "publish batch", service: "tentativa-gateway" });
    expect(batch!.attributes).toMatchObject({ "tentativa.system": "SYSTEM1", "tentativa.count": 21 });

    const attempts = trace.filter((s) => s.name === "attempt").sort((a, b) => a.startMs - b.startMs);
    expect(
      attempts.map((s) => [
        s.service,
        s.attributes["tentativa.message_id"],
        s.attributes["tentativa.system"],
        s.attributes["tentativa.order_id"],
        s.attributes["tentativa.round"],
        s.attributes["tentativa.attempt"],
        s.attributes["tentativa.status"],
      ]),
    ).toEqual([
      ["tentativa-consumer", ordered, "SYSTEM1", threeAttempts, 0, 1, "RETRY_SCHEDULED"],
      ["tentativa-consumer", ordered, "SYSTEM1", threeAttempts, 0, 2, "RETRY_SCHEDULED"],
      ["tentativa-consumer", ordered, "SYSTEM1", threeAttempts, 0, 3, "SUCCEEDED"],
    ]);
    for (const a of attempts) expect(ancestry(spans, a)).toContain(publish[0]);
    // Attempt n + 1 follows from the retry copy attempt n sent.
    expect(ancestry(spans, attempts[2]!)).toContain(attempts[1]);
    expect(ancestry(spans, attempts[1]!)).toContain(attempts[0]);
    const writes = trace.filter((s) => s.name === "endput insert");
    expect(writes).toHaveLength(1);
    expect(writes[0]!.parentSpanId).toBe(attempts[2]!.spanId);
    // The client libraries are instrumented too: amqplib's publish and consume spans are in the trace.
    expect(trace.some((s) => s.scope === "@opentelemetry/instrumentation-amqplib")).toBe(true);
    // A batch's store calls serve every order in it: they are in the batch's own trace, which each
    // attempt links to, and not in the order's.
    const consumeBatch = spans.find((s) => s.spanId === attempts[2]!.links[0]?.spanId);
    expect(consumeBatch).toMatchObject({ name: "consume batch", service: "tentativa-consumer" });
    const batchTrace = spans.filter((s) => s.traceId === consumeBatch!.traceId);
    for (const scope of ["pg", "mongodb", "ioredis"])
      expect(
        batchTrace.some((s) => s.scope === `@opentelemetry/instrumentation-${scope}`),
        scope,
      ).toBe(true);
    expect(trace.filter((s) => /instrumentation-(pg|mongodb|ioredis)$/.test(s.scope))).toEqual([]);

    // The dead letter: its redrive and the new round stay in its trace.
    const deadTrace = deadHistory[0]!.traceId!;
    expect(deadTrace).toMatch(/^[0-9a-f]{32}$/);
    expect(deadTrace).not.toBe(traceId);
    expect(deadHistory.map((a) => [a.round, a.attempt, a.status, a.traceId])).toEqual([
      [0, 1, "RETRY_SCHEDULED", deadTrace],
      [0, 2, "RETRY_SCHEDULED", deadTrace],
      [0, 3, "DEAD_LETTERED", deadTrace],
      [1, 0, "REDRIVEN", deadTrace],
      [1, 1, "RETRY_SCHEDULED", deadTrace],
      [1, 2, "RETRY_SCHEDULED", deadTrace],
      [1, 3, "DEAD_LETTERED", deadTrace],
    ]);
    const inDead = spans.filter((s) => s.traceId === deadTrace);
    const deadLetters = inDead.filter((s) => s.name === "dead-letter");
    expect(deadLetters).toHaveLength(2);
    const redrive = inDead.filter((s) => s.name === "redrive");
    expect(redrive).toHaveLength(1);
    expect(redrive[0]).toMatchObject({ service: "tentativa-gateway" });
    expect(redrive[0]!.attributes).toMatchObject({ "tentativa.message_id": dead, "tentativa.round": 1 });
    // Linked to the redriveDeadLetters request, a trace of its own.
    const operation = spans.find((s) => s.spanId === redrive[0]!.links[0]?.spanId);
    expect(operation?.service).toBe("tentativa-gateway");
    expect(operation?.traceId).not.toBe(deadTrace);
    expect(ancestry(spans, redrive[0]!)).toContain(deadLetters.sort((a, b) => a.startMs - b.startMs)[0]);
    const newRound = inDead
      .filter((s) => s.name === "attempt" && s.attributes["tentativa.round"] === 1)
      .sort((a, b) => a.startMs - b.startMs);
    expect(newRound.map((s) => s.attributes["tentativa.attempt"])).toEqual([1, 2, 3]);
    for (const a of newRound) expect(ancestry(spans, a)).toContain(redrive[0]);
  });
});

describe("the dashboard's timeline", () => {
  it("shows each entry's trace id and links it through TRACE_URL_TEMPLATE", { timeout: 120_000 }, async () => {
    const dashboard = path.join(ROOT, "gateway/dashboard");
    const built = path.join(dashboard, "dist/index.html");
    const src = path.join(dashboard, "src");
    const newest = Math.max(...fs.readdirSync(src).map((f) => fs.statSync(path.join(src, f)).mtimeMs));
    if (!fs.existsSync(built) || fs.statSync(built).mtimeMs < newest)
      execFileSync(process.execPath, ["node_modules/vite/bin/vite.js", "build", "--config", "gateway/dashboard/vite.config.ts"], {
        cwd: ROOT,
        stdio: ["ignore", "ignore", "inherit"],
      });
    env = await createTestEnv({ TRACE_URL_TEMPLATE: TRACE_URL });
    const traced = "0af7651916cd43dd8448eb211c80319c";
    const messageId = orderMessageId("SYSTEM1", 5);
    const now = new Date();
    const entry = (attempt: number, status: "RETRY_SCHEDULED" | "SUCCEEDED", traceId?: string) =>
      logEntry({
        messageId,
        attempt,
        status,
        requiredAttempts: 2,
        orderId: 5,
        publishedAt: now,
        processedAt: new Date(now.getTime() + attempt),
        expiresAt: env!.log.expiryFrom(now),
        ...(traceId ? { traceId } : {}),
      });
    // The first attempt was logged while tracing was off: it shows no trace.
    await env.log.insert([entry(1, "RETRY_SCHEDULED"), entry(2, "SUCCEEDED", traced)]);

    const base = await listen(env.gateway.server);
    browser = await openBrowser("tracing");
    const { page, pageErrors } = browser;
    await page.goto(`${base}/`);
    const timeline = page.getByRole("region", { name: "Message timeline" });
    await timeline.getByLabel("Message id").fill(messageId);
    await timeline.getByRole("button", { name: "Show" }).click();
    const attempts = timeline.getByRole("list", { name: `Attempts of ${messageId}` }).getByRole("listitem");
    await poll(() => attempts.count()).toBe(2);
    expect(await attempts.nth(0).getByTestId("timeline-trace").count()).toBe(0);
    const link = attempts.nth(1).getByTestId("timeline-trace").getByRole("link", { name: traced });
    expect(await link.getAttribute("href")).toBe(TRACE_URL.replace("{traceId}", traced));
    fs.mkdirSync(OUT, { recursive: true });
    await timeline.screenshot({ path: path.join(OUT, "timeline-trace.png") });
    expect(pageErrors).toEqual([]);
  });
});
