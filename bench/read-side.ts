// The read side: an attempt log of realistic size, written with insertMany in
// the shape the consumer writes (and with the indexes it creates), then
// `messageHistory` under 50 connections against `{ __typename }` on the same
// gateway, then what a refused megabyte of tokens costs it, and what the lookup's
// MongoDB call costs by itself, made from this process.
import http from "node:http";

import autocannon from "autocannon";
import { print } from "graphql";

import { createAttemptLog, LOG_COLLECTION, type LogDocument } from "../common/attempt-log.ts";
import type { Config } from "../common/config.ts";
import { type System } from "../common/contract.ts";
import { createLogger } from "../common/logger.ts";
import { createMongo } from "../common/stores.ts";
import { orderMessageId } from "../gateway/src/services/message-id.ts";
import type { BenchContext, RunningGateway } from "./context.ts";
import { HISTORY } from "./gql.ts";
import type { CpuUsage } from "./machine.ts";
import { every, fmt, progress, sleep } from "./progress.ts";
import type { Scenario } from "./world.ts";

const PRODUCTS = ["Keyboard", "Mouse", "Monitor", "Laptop", "Headset", "Docking station", "SSD 1TB", "Router"];
/** Far above any id a benchmark seeds, so the generated history never collides with a live run's. */
const ORDER_ID_BASE = 10_000_000;

/**
 * Attempt documents as the seed mix produces them: half the orders need one
 * more attempt than allowed (dead-lettered at the last), the rest 1..max.
 */
export function* logDocuments(total: number, config: Config, consumerId: string): Generator<LogDocument> {
  const max = config.retry.maxAttempts;
  const ttlMs = config.mongo.ttlSeconds * 1000;
  let produced = 0;
  let clock = Date.now() - 3600_000;
  for (let i = 0; produced < total; i++) {
    const system: System = i % 2 === 0 ? "SYSTEM1" : "SYSTEM2";
    const orderId = ORDER_ID_BASE + i;
    const securityCheck = Math.random() < 0.5;
    const required = securityCheck ? 1 + Math.floor(Math.random() * max) : max + 1;
    const order = { product: PRODUCTS[i % PRODUCTS.length]!, price: (1 + (i % 99_900) / 100).toFixed(2), securityCheck };
    const publishedAt = new Date(clock);
    for (let attempt = 1; attempt <= Math.min(required, max) && produced < total; attempt++) {
      const status = attempt >= required ? "SUCCEEDED" : attempt < max ? "RETRY_SCHEDULED" : "DEAD_LETTERED";
      const failed = status !== "SUCCEEDED";
      const terminal = status === "DEAD_LETTERED";
      const processedAt = new Date((clock += 3));
      produced++;
      yield {
        messageId: orderMessageId(system, orderId),
        round: 0,
        attempt,
        status,
        requiredAttempts: required,
        maxAttempts: max,
        system,
        orderId,
        publishedAt,
        order,
        error: failed
          ? `attempt ${attempt} failed: the order needs ${required} attempts${terminal ? `; giving up after ${attempt} of ${max} attempts` : ""}`
          : null,
        processedAt,
        expiresAt: terminal ? null : new Date(processedAt.getTime() + ttlMs),
        retained: terminal,
        durationMs: 0.2 + Math.random(),
        consumerId,
      };
    }
  }
}

export interface LogFill {
  database: string;
  docs: number;
  seconds: number;
  docsPerSecond: number;
  sampleMessageIds: string[];
}

/** Creates the consumer's indexes, then inserts `total` documents (4 insertMany streams of 1,000). */
export async function fillLog(ctx: BenchContext, s: Scenario, total: number): Promise<LogFill> {
  const db = ctx.world.mongo.db(s.config.mongo.database);
  const log = createAttemptLog({ db, config: s.config, logger: createLogger(s.config, "bench") });
  await log.ensureIndexes();
  const collection = db.collection<LogDocument>(LOG_COLLECTION);
  const docs = logDocuments(total, s.config, "bench-fill");
  const samples: string[] = [];
  let inserted = 0;
  const t0 = performance.now();
  const stop = every(5000, () => {
    const secs = (performance.now() - t0) / 1000;
    progress(`log: ${fmt(inserted)}/${fmt(total)} documents (${fmt(inserted / secs)}/s)`);
  });
  try {
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        for (;;) {
          const batch: LogDocument[] = [];
          for (let r = docs.next(); !r.done; r = docs.next()) {
            batch.push(r.value);
            if (r.value.attempt === 1 && r.value.orderId! % 997 === 0 && samples.length < 2000) samples.push(r.value.messageId);
            if (batch.length === 1000) break;
          }
          if (batch.length === 0) return;
          await collection.insertMany(batch, { ordered: false });
          inserted += batch.length;
        }
      }),
    );
  } finally {
    stop();
  }
  const seconds = (performance.now() - t0) / 1000;
  return {
    database: s.config.mongo.database,
    docs: inserted,
    seconds,
    docsPerSecond: inserted / seconds,
    sampleMessageIds: samples,
  };
}

export interface LoadResult {
  requestsPerSecond: number;
  requests: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  errors: number;
  timeouts: number;
  non2xx: number;
  /** Responses that carried GraphQL errors. */
  mismatches: number;
}

async function load(port: number, seconds: number, connections: number, body: () => string): Promise<LoadResult> {
  const r = await autocannon({
    url: `http://127.0.0.1:${port}/graphql`,
    connections,
    duration: seconds,
    timeout: 30,
    method: "POST",
    headers: { "content-type": "application/json" },
    requests: [{ method: "POST", setupRequest: (req) => ({ ...req, body: body() }) }],
    verifyBody: (text) => !text.includes('"errors"'),
  });
  return {
    requestsPerSecond: r.requests.total / r.duration,
    requests: r.requests.total,
    p50Ms: r.latency.p50,
    p99Ms: r.latency.p99,
    maxMs: r.latency.max,
    errors: r.errors,
    timeouts: r.timeouts,
    non2xx: r.non2xx,
    mismatches: r.mismatches,
  };
}

/** Waits until no query on this Mongo database is still running on FerretDB's PostgreSQL. */
async function waitForFerretQuiet(ctx: BenchContext, schema: string, timeoutMs: number): Promise<number> {
  const db = ctx.services.ferretdbDatabase;
  if (!db) return 0;
  const t0 = performance.now();
  while (performance.now() - t0 < timeoutMs) {
    const active = await ctx.world.withPg("postgres", async (c) => {
      const { rows } = await c.query<{ n: string }>(
        `select count(*) as n from pg_stat_activity where datname = $1 and state = 'active' and position($2 in query) > 0`,
        [db, schema],
      );
      return Number(rows[0]!.n);
    });
    if (active === 0) break;
    await sleep(250);
  }
  return (performance.now() - t0) / 1000;
}

/**
 * Vacuums and analyzes the freshly filled log's table on FerretDB's PostgreSQL, so
 * that the vacuum a million new rows trigger runs here and not during a later
 * measurement (and the first scans do not pay for setting hint bits).
 */
export async function settleLog(ctx: BenchContext, s: Scenario): Promise<number> {
  const db = ctx.services.ferretdbDatabase;
  if (!db) return 0;
  const t0 = performance.now();
  await ctx.world.withPg(db, async (c) => {
    const { rows } = await c.query<{ table_name: string }>(
      `select table_name from information_schema.tables where table_schema = $1 and table_name like $2`,
      [s.config.mongo.database, `${LOG_COLLECTION}%`],
    );
    for (const { table_name } of rows) await c.query(`vacuum (analyze) "${s.config.mongo.database}"."${table_name}"`);
  });
  return (performance.now() - t0) / 1000;
}

export interface ReadResult {
  logDocs: number;
  fill: Omit<LogFill, "sampleMessageIds">;
  connections: number;
  seconds: number;
  trivial: LoadResult;
  history: LoadResult;
  /** One request at a time: what a single messageHistory costs. */
  serialHistoryMs: number;
  historyDocsPerCall: number;
  /** Megabyte documents of tokens sent one at a time, each refused (TOO_MANY_TOKENS). */
  refused: { requests: number; bytes: number; p50Ms: number; p99Ms: number };
  cpu: { trivial: CpuUsage; history: CpuUsage; refused: CpuUsage };
  /** The gateway's MongoDB call for messageHistory, made from the bench process without the gateway. */
  driverAlone: DriverAlone;
  drainSeconds: number;
}

const REFUSED_REQUESTS = 200;
/** Lookups the driver makes alone: a few seconds at the rates measured here. */
const DRIVER_LOOKUPS = 2000;
const REFUSED_BYTES = 1024 * 1024;

/** One POST on its own connection; resolves with the time to the answer's end and its text. */
function postOnce(port: number, body: string): Promise<{ ms: number; text: string }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const req = http.request(
      {
        host: "127.0.0.1",
        port,
        path: "/graphql",
        method: "POST",
        agent: false,
        headers: { "content-type": "application/json" },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("error", reject);
        res.on("end", () => resolve({ ms: performance.now() - t0, text: Buffer.concat(chunks).toString("utf8") }));
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

/** Megabyte documents of tokens, each distinct, one at a time: each must be refused with TOO_MANY_TOKENS. */
async function refuseMegabytes(port: number): Promise<ReadResult["refused"]> {
  const filler = " __typename".repeat(Math.floor((REFUSED_BYTES - 200) / 11));
  const ms: number[] = [];
  for (let i = 0; i < REFUSED_REQUESTS; i++) {
    const r = await postOnce(port, JSON.stringify({ query: `{ k${i}: cursors { system }${filler} }` }));
    if (!r.text.includes('"TOO_MANY_TOKENS"')) throw new Error(`a megabyte of tokens was not refused: ${r.text.slice(0, 200)}`);
    ms.push(r.ms);
  }
  ms.sort((a, b) => a - b);
  const at = (q: number) => ms[Math.min(ms.length - 1, Math.ceil(q * ms.length) - 1)]!;
  return { requests: REFUSED_REQUESTS, bytes: REFUSED_BYTES, p50Ms: at(0.5), p99Ms: at(0.99) };
}

export interface DriverAlone {
  lookups: number;
  inFlight: number;
  /** This process's CPU (every thread, as /proc counts a process) per lookup. */
  cpuUsPerLookup: number;
}

/**
 * The attempt log's `history` call, the one messageHistory makes, from this process with the
 * gateway's client settings and `inFlight` at once: what the driver and its BSON cost per lookup
 * with no HTTP or GraphQL around them.
 */
async function driverAlone(s: Scenario, pick: () => string, inFlight: number): Promise<DriverAlone> {
  const client = createMongo(s.config);
  try {
    const log = createAttemptLog({
      db: client.db(s.config.mongo.database),
      config: s.config,
      logger: createLogger(s.config, "bench"),
    });
    // Warm: the pool's connections and the driver's code paths.
    await Promise.all(Array.from({ length: inFlight }, () => log.history(pick())));
    let left = DRIVER_LOOKUPS;
    let found = 0;
    const c0 = process.cpuUsage();
    await Promise.all(
      Array.from({ length: inFlight }, async () => {
        while (left-- > 0) {
          const docs = await log.history(pick());
          found += docs.length;
        }
      }),
    );
    const c = process.cpuUsage(c0);
    if (found === 0) throw new Error("the attempt log's history call found no documents for ids that are in the log");
    return { lookups: DRIVER_LOOKUPS, inFlight, cpuUsPerLookup: (c.user + c.system) / DRIVER_LOOKUPS };
  } finally {
    await client.close();
  }
}

export async function runReadSide(ctx: BenchContext, s: Scenario, fill: LogFill): Promise<ReadResult> {
  const { options } = ctx;
  let gateway: RunningGateway | undefined;
  try {
    gateway = await ctx.startGateway(s);
    const ids = fill.sampleMessageIds;
    const pick = () => ids[Math.floor(Math.random() * ids.length)]!;

    // One at a time first: the cost of a single lookup, and a check that it returns the history.
    let docsSeen = 0;
    const serial: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t = performance.now();
      const r = await gateway.gql(HISTORY, { id: pick() });
      serial.push(performance.now() - t);
      docsSeen += r.messageHistory.length;
    }
    if (docsSeen === 0) throw new Error("messageHistory returned no documents for ids that are in the log");
    const serialHistoryMs = serial.sort((a, b) => a - b)[2]!;
    progress(`read: one messageHistory on ${fmt(fill.docs)} documents takes ${fmt(serialHistoryMs)} ms (median of 5)`);

    const trivialBody = JSON.stringify({ query: "{ __typename }" });
    progress(`read: { __typename } with ${options.connections} connections for ${options.readSeconds} s (after a 2 s warm-up)`);
    await load(gateway.port, 2, options.connections, () => trivialBody);
    let c0 = ctx.cpu();
    const trivial = await load(gateway.port, options.readSeconds, options.connections, () => trivialBody);
    let c1 = ctx.cpu();
    const trivialCpu = ctx.cpuBetween(c0, c1);

    const historyText = print(HISTORY);
    progress(`read: messageHistory with ${options.connections} connections for ${options.readSeconds} s`);
    c0 = ctx.cpu();
    const history = await load(gateway.port, options.readSeconds, options.connections, () =>
      JSON.stringify({ query: historyText, variables: { id: pick() } }),
    );
    c1 = ctx.cpu();
    const historyCpu = ctx.cpuBetween(c0, c1);

    progress(`read: ${REFUSED_REQUESTS} megabyte documents of tokens, one at a time, each refused`);
    c0 = ctx.cpu();
    const refused = await refuseMegabytes(gateway.port);
    c1 = ctx.cpu();
    const refusedCpu = ctx.cpuBetween(c0, c1);
    await gateway.stop();
    gateway = undefined;
    // Lookups the load tool abandoned keep scanning on the server; let them finish before the next step.
    const drainSeconds = await waitForFerretQuiet(ctx, s.config.mongo.database, 120_000);
    progress(`read: the lookup's MongoDB call alone, ${fmt(DRIVER_LOOKUPS)} times, ${options.connections} at once`);
    const alone = await driverAlone(s, pick, options.connections);
    progress(
      `read: trivial ${fmt(trivial.requestsPerSecond)} req/s (p99 ${fmt(trivial.p99Ms)} ms); messageHistory ${fmt(history.requestsPerSecond, 1)} req/s ` +
        `(p50 ${fmt(history.p50Ms)} ms, p99 ${fmt(history.p99Ms)} ms, ${history.timeouts} timeouts)` +
        (drainSeconds > 1 ? `; abandoned lookups ran on for ${fmt(drainSeconds, 1)} s` : ""),
    );
    const { sampleMessageIds: _ids, ...fillInfo } = fill;
    return {
      logDocs: fill.docs,
      fill: fillInfo,
      connections: options.connections,
      seconds: options.readSeconds,
      trivial,
      history,
      serialHistoryMs,
      historyDocsPerCall: docsSeen / 5,
      refused,
      cpu: { trivial: trivialCpu, history: historyCpu, refused: refusedCpu },
      driverAlone: alone,
      drainSeconds,
    };
  } finally {
    await gateway?.stop();
  }
}
