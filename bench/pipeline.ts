// End-to-end runs through the shipped processes: seed both systems through the
// gateway, start the consumers, then time publishPending until the last
// outcome's event arrives, and check that every order, attempt and event is
// accounted for. Also the publish side alone (no consumer), with the
// gateway's peak RSS.
import amqp from "amqplib";
import { print } from "graphql";
import { createClient } from "graphql-ws";
import pg from "pg";
import WebSocket from "ws";

import { LOG_COLLECTION } from "../common/attempt-log.ts";
import { readConfigWith } from "../common/config.ts";
import { type ProcessingStatus, type System, SYSTEMS } from "../common/contract.ts";
import { eventsTopic } from "../common/events.ts";
import { counterField, counterKey } from "../common/keys.ts";
import { createRedis } from "../common/stores.ts";
import { makeTopology } from "../common/topology.ts";
import { PIPELINE_STATS, PUBLISH, type PublishResult, SEED } from "../gateway/client/operations.ts";
import { WATCH } from "../gateway/src/cli/operations.ts";
import type { BenchContext, RunningGateway } from "./context.ts";
import type { Gql } from "./gql.ts";
import type { CpuUsage } from "./machine.ts";
import { type Child, memoryOf, resetPeakRss } from "./processes.ts";
import { every, fmt, progress, sleep } from "./progress.ts";
import type { Overrides, Scenario } from "./world.ts";

export interface BatchStats {
  batches: number;
  avgSize: number;
  avgMs: number;
  /** Batches in progress on average per consumer (batch seconds / wall seconds); ~1 = never idle, >1 with CONSUMER_CONCURRENCY. */
  inFlight: number;
}

/** What the live-event subscribers of a run received. */
export interface LiveResult {
  subscribers: number;
  /** Events each subscriber received. */
  delivered: number[];
  /** Subscribers the gateway ended with SUBSCRIBER_TOO_SLOW. */
  tooSlow: number;
}

export interface PipelineResult {
  name: string;
  orders: number;
  consumers: number;
  trueOrders: number;
  falseOrders: number;
  preloadedLogDocs: number;
  /** Sweeper intervals that ended during the measurement, per consumer (each a pass over the whole log on FerretDB). */
  sweeps: number;
  seconds: number;
  ordersPerSecond: number;
  attempts: number;
  attemptsPerSecond: number;
  publishSeconds: number;
  publishRowsPerSecond: number;
  batch: BatchStats;
  cpu: CpuUsage;
  live?: LiveResult;
  verified: {
    endputRows: number;
    succeeded: number;
    deadLettered: number;
    events: number;
    logDocs: number | null;
    statsInFlight: number;
    problems: string[];
  };
}

/** Seeds `count` orders into one system through the gateway, in calls of at most `max`. */
async function seed(gql: Gql, system: System, count: number, ratio: number, max: number) {
  let lastId = 0;
  let trueCount = 0;
  for (let done = 0; done < count;) {
    const n = Math.min(max, count - done);
    const r = await gql(SEED, { system, count: n, ratio });
    lastId = r.seedOrders.lastId ?? lastId;
    trueCount += r.seedOrders.securityCheckTrue;
    done += n;
  }
  return { lastId, trueCount };
}

/** Calls publishPending until the cursor reaches `lastId` (a call stops early while older source transactions are open). */
async function publishUpTo(
  gql: Gql,
  system: System,
  lastId: number,
  onResult?: (r: PublishResult) => void,
): Promise<{ published: number; calls: number }> {
  let published = 0;
  let calls = 0;
  const deadline = Date.now() + 30 * 60_000;
  for (;;) {
    const { publishPending: r } = await gql(PUBLISH, { system });
    onResult?.(r);
    calls++;
    published += r.published;
    if (r.cursor >= lastId) return { published, calls };
    if (Date.now() > deadline) throw new Error(`${system}: cursor stuck at ${r.cursor} of ${lastId}`);
    if (r.published === 0) await sleep(50);
  }
}

const split = (total: number): Record<System, number> => ({ SYSTEM1: Math.ceil(total / 2), SYSTEM2: Math.floor(total / 2) });

async function scrapeBatches(ports: number[], wallSeconds: number): Promise<BatchStats> {
  let count = 0;
  let sizeSum = 0;
  let secondsSum = 0;
  for (const port of ports) {
    const text = await fetch(`http://127.0.0.1:${port}/metrics`)
      .then((r) => r.text())
      .catch(() => "");
    const metric = (name: string) => Number(new RegExp(`^${name} ([0-9.e+-]+)$`, "m").exec(text)?.[1] ?? 0);
    count += metric("tentativa_batch_size_count");
    sizeSum += metric("tentativa_batch_size_sum");
    secondsSum += metric("tentativa_batch_duration_seconds_sum");
  }
  return {
    batches: count,
    avgSize: count ? sizeSum / count : 0,
    avgMs: count ? (secondsSum / count) * 1000 : 0,
    inFlight: wallSeconds > 0 ? secondsSum / ports.length / wallSeconds : 0,
  };
}

/** For a stall report: the oldest open transactions on the PostgreSQL server (a publisher waits behind them). */
async function oldestTransactions(ctx: BenchContext): Promise<string> {
  return ctx.world
    .withPg("postgres", async (c) => {
      const { rows } = await c.query(
        `select datname, state, backend_xid::text as xid, round(extract(epoch from now() - xact_start)) as age_s, left(query, 60) as query
         from pg_stat_activity where xact_start is not null order by xact_start limit 3`,
      );
      return JSON.stringify(rows);
    })
    .catch((err: Error) => err.message);
}

/**
 * The attempt log's document count. collStats first: FerretDB answers it from the
 * table (exact until the table is analyzed, then PostgreSQL's estimate), while
 * countDocuments decodes every document (about a minute for 100,000 here); the
 * exact count runs only when the quick one disagrees.
 */
async function countLogDocs(ctx: BenchContext, s: Scenario, expected: number): Promise<number | null> {
  const collection = ctx.world.mongo.db(s.config.mongo.database).collection(LOG_COLLECTION);
  try {
    const quick = Number((await collection.db.command({ collStats: LOG_COLLECTION })).count);
    if (quick === expected) return quick;
    progress(`${s.name}: collStats counts ${quick} log documents, expected ${expected}; counting exactly`);
    return await collection.countDocuments({}, { maxTimeMS: 180_000 });
  } catch (err) {
    progress(`${s.name}: counting log documents failed (${(err as Error).message}); relying on counters and events`);
    return null;
  }
}

export interface PipelineRun {
  name: string;
  orders: number;
  /** Share of orders with security_check = true. */
  ratio: number;
  consumers: number;
  maxAttempts: number;
  retryDelayMs?: number;
  /** Run against an existing attempt log of this many documents (its database is reused, not dropped). */
  preloaded?: { database: string; docs: number };
  cpuProf?: boolean;
  /** processingEvents subscribers (graphql-ws, in this process) that read every event of the run. */
  subscribers?: number;
}

interface Outcomes {
  succeeded: number;
  dead: number;
  attempts: number;
}

/** The scenario's Redis counters, summed over both systems. */
async function readCounters(ctx: BenchContext, s: Scenario): Promise<Outcomes> {
  const h = await ctx.world.redis.hgetall(counterKey(s.config));
  const sum = (status: ProcessingStatus) => SYSTEMS.reduce((n, sys) => n + Number(h[counterField(sys, status)] ?? 0), 0);
  const all = Object.values(h).reduce((n, v) => n + Number(v), 0);
  return { succeeded: sum("SUCCEEDED"), dead: sum("DEAD_LETTERED"), attempts: all };
}

/** Counts the processing events the scenario's consumers announce, and when the last one arrived. */
async function countEvents(s: Scenario) {
  const sub = createRedis(s.config, "bench-events");
  const seen = { events: 0, lastAt: 0 };
  await sub.subscribe(eventsTopic(s.config));
  sub.on("message", () => {
    seen.events++;
    seen.lastAt = performance.now();
  });
  return {
    seen,
    close: () =>
      sub.quit().then(
        () => undefined,
        () => undefined,
      ),
  };
}

/**
 * `k` clients subscribed to every processing event over graphql-ws, as the CLI's watch
 * subscribes, each counting what it receives; resolves once the gateway listens for them.
 */
async function subscribeLive(ctx: BenchContext, s: Scenario, port: number, k: number) {
  const query = print(WATCH);
  const states = Array.from({ length: k }, () => ({ events: 0, lastAt: 0, ended: "" }));
  const clients = states.map((state) => {
    const client = createClient({ url: `ws://127.0.0.1:${port}/graphql`, webSocketImpl: WebSocket, retryAttempts: 0 });
    client.subscribe(
      { query },
      {
        next: (r) => {
          const code = r.errors?.[0]?.extensions?.code;
          if (r.errors?.length) state.ended = String(code ?? r.errors[0]!.message);
          else {
            state.events++;
            state.lastAt = performance.now();
          }
        },
        error: (err) => (state.ended ||= `error: ${err instanceof Error ? err.message : JSON.stringify(err)}`),
        complete: () => (state.ended ||= "complete"),
      },
    );
    return client;
  });
  // The scenario's own counter listens too: one more than the gateway's single Redis subscription.
  const deadline = Date.now() + 10_000;
  while (Number((await ctx.world.redis.pubsub("NUMSUB", eventsTopic(s.config)))[1]) < 2) {
    if (Date.now() > deadline) throw new Error(`live: the gateway did not subscribe to the events within 10 s`);
    await sleep(20);
  }
  return {
    states,
    /** Waits until every subscriber has `events` or has ended, for at most `ms`. */
    async settle(events: number, ms: number) {
      const until = performance.now() + ms;
      while (states.some((x) => x.events < events && !x.ended) && performance.now() < until) await sleep(20);
    },
    close: () => Promise.all(clients.map((c) => c.dispose())),
  };
}

/** Publishes both systems up to their last seeded ids; `publishedAt` is set when both are done. */
function publishBoth(gql: Gql, lastIds: Record<System, number>) {
  const state = { publishedAt: 0, error: undefined as Error | undefined, last: {} as Partial<Record<System, PublishResult>> };
  const done = Promise.all(SYSTEMS.map((sys) => publishUpTo(gql, sys, lastIds[sys], (r) => (state.last[sys] = r)))).then((r) => {
    state.publishedAt = performance.now();
    return r;
  });
  done.catch((err: Error) => (state.error = err));
  return { state, done };
}

/**
 * Polls the counters until every order reached its outcome and publishing is done, with
 * progress every 3 s; fails on a publish error, a consumer that exited, or 120 s without progress.
 */
async function waitForOutcomes(
  ctx: BenchContext,
  s: Scenario,
  run: { name: string; trueOrders: number; falseOrders: number; t0: number },
  gateway: RunningGateway,
  consumers: Child[],
  publishing: ReturnType<typeof publishBoth>,
): Promise<Outcomes> {
  const { name, trueOrders, falseOrders, t0 } = run;
  const { state } = publishing;
  let last: Outcomes = { succeeded: 0, dead: 0, attempts: 0 };
  let lastChange = performance.now();
  const stopProgress = every(3000, () => {
    const secs = (performance.now() - t0) / 1000;
    progress(
      `${name}: ${fmt(last.succeeded)}/${fmt(trueOrders)} succeeded, ${fmt(last.dead)}/${fmt(falseOrders)} dead-lettered, ` +
        `${fmt(last.attempts)} attempts (${fmt(last.attempts / secs)}/s)${state.publishedAt ? "" : ", still publishing"}`,
    );
  });
  try {
    for (;;) {
      const now = await readCounters(ctx, s);
      if (now.attempts !== last.attempts) lastChange = performance.now();
      last = now;
      if (now.succeeded >= trueOrders && now.dead >= falseOrders && state.publishedAt) break;
      if (state.error)
        throw new Error(
          `${name}: publishPending failed: ${state.error.message}` +
            (gateway.exited() ? ` (the gateway exited: ${gateway.exitReason()})` : ""),
        );
      if (performance.now() - lastChange > 120_000)
        throw new Error(
          `${name}: no progress for 120 s (${JSON.stringify(now)}; last publishPending ${JSON.stringify(state.last)}; ` +
            `oldest transactions on the server: ${await oldestTransactions(ctx)})`,
        );
      const gone = consumers.find((c) => c.exited());
      if (gone) throw new Error(`${name}: ${gone.name} exited (${gone.exitReason()}); see ${gone.logFile}`);
      await sleep(50);
    }
    await publishing.done;
    return last;
  } finally {
    stopProgress();
  }
}

/** The sink, the counters, the events, the log and the gateway's reconciliation agree. */
async function verifyRun(
  ctx: BenchContext,
  s: Scenario,
  run: PipelineRun & { trueOrders: number; falseOrders: number; events: number },
  gql: Gql,
): Promise<{ final: Outcomes; verified: PipelineResult["verified"] }> {
  const problems: string[] = [];
  const endputRows = await ctx.world.withPg(s.databases.endput, async (c: pg.Client) => {
    const { rows } = await c.query<{ n: string }>("select count(*) as n from orders");
    return Number(rows[0]!.n);
  });
  const final = await readCounters(ctx, s);
  const stats = await gql(PIPELINE_STATS);
  const statsInFlight = stats.pipelineStats.systems.reduce((n, x) => n + x.inFlight, 0);
  if (endputRows !== run.trueOrders) problems.push(`endput has ${endputRows} rows, expected ${run.trueOrders}`);
  if (final.dead !== run.falseOrders) problems.push(`${final.dead} dead-lettered, expected ${run.falseOrders}`);
  if (run.events !== final.attempts) problems.push(`${run.events} events for ${final.attempts} attempts`);
  if (statsInFlight !== 0) problems.push(`pipelineStats reports ${statsInFlight} in flight`);
  // A preloaded log is too big to count exactly in time (and its collStats count is an estimate); the counters and events cover it.
  const logDocs = run.preloaded ? null : await countLogDocs(ctx, s, final.attempts);
  if (logDocs !== null && logDocs !== final.attempts)
    problems.push(`${logDocs} new log documents for ${final.attempts} attempts`);
  if (problems.length) progress(`${run.name}: VERIFICATION FAILED: ${problems.join("; ")}`);
  const verified = {
    endputRows,
    succeeded: final.succeeded,
    deadLettered: final.dead,
    events: run.events,
    logDocs,
    statsInFlight,
    problems,
  };
  return { final, verified };
}

/** Seeds both systems through the gateway: the last id of each and how many orders are true. */
async function seedBoth(gql: Gql, s: Scenario, opts: PipelineRun) {
  progress(`${opts.name}: seeding ${fmt(opts.orders)} orders (securityCheckRatio ${opts.ratio}) through seedOrders`);
  const per = split(opts.orders);
  const seeded = await Promise.all(SYSTEMS.map((sys) => seed(gql, sys, per[sys], opts.ratio, s.config.gateway.seedMaxCount)));
  const lastIds = Object.fromEntries(SYSTEMS.map((sys, i) => [sys, seeded[i]!.lastId])) as Record<System, number>;
  const trueOrders = seeded.reduce((n, r) => n + r.trueCount, 0);
  return { lastIds, trueOrders, falseOrders: opts.orders - trueOrders };
}

/** What the subscribers received; one that neither had every event nor was ended as too slow is a problem. */
function liveResult(states: { events: number; ended: string }[], attempts: number, problems: string[]): LiveResult {
  states.forEach((x, i) => {
    if (x.events < attempts && x.ended !== "SUBSCRIBER_TOO_SLOW")
      problems.push(`subscriber ${i + 1} received ${x.events} of ${attempts} events${x.ended ? ` (${x.ended})` : ""}`);
  });
  return {
    subscribers: states.length,
    delivered: states.map((x) => x.events),
    tooSlow: states.filter((x) => x.ended === "SUBSCRIBER_TOO_SLOW").length,
  };
}

export async function runPipeline(ctx: BenchContext, opts: PipelineRun): Promise<PipelineResult> {
  const { world } = ctx;
  const extra: Overrides = { MAX_ATTEMPTS: String(opts.maxAttempts) };
  if (opts.retryDelayMs !== undefined) extra.RETRY_DELAY_MS = String(opts.retryDelayMs);
  if (opts.subscribers) {
    extra.GATEWAY_CLIENT_SUBSCRIPTIONS = String(Math.max(10, opts.subscribers));
    extra.GATEWAY_MAX_SUBSCRIPTIONS = String(Math.max(200, opts.subscribers));
  }
  if (opts.preloaded) extra.MONGO_DATABASE = opts.preloaded.database;
  const s = await world.scenario(opts.name, extra, { borrowedMongo: opts.preloaded !== undefined });
  let gateway: RunningGateway | undefined;
  let consumers: Child[] = [];
  let events: Awaited<ReturnType<typeof countEvents>> | undefined;
  let live: Awaited<ReturnType<typeof subscribeLive>> | undefined;
  try {
    progress(`${opts.name}: starting the gateway`);
    gateway = await ctx.startGateway(s, { cpuProf: opts.cpuProf });
    const gql = gateway.gql;
    const { lastIds, trueOrders, falseOrders } = await seedBoth(gql, s, opts);

    progress(`${opts.name}: starting ${opts.consumers} consumer process(es)`);
    consumers = await ctx.startConsumers(s, opts.consumers, { cpuProf: opts.cpuProf });
    const consumersStarted = performance.now();
    const sweepIntervalMs = readConfigWith({ ...s.overrides, ...ctx.options.consumerEnv }).mongo.sweepIntervalMs;
    events = await countEvents(s);
    if (opts.subscribers) {
      progress(`${opts.name}: ${opts.subscribers} processingEvents subscribers over graphql-ws`);
      live = await subscribeLive(ctx, s, gateway.port, opts.subscribers);
    }

    const c0 = ctx.cpu();
    const t0 = performance.now();
    const publishing = publishBoth(gql, lastIds);
    const last = await waitForOutcomes(ctx, s, { name: opts.name, trueOrders, falseOrders, t0 }, gateway, consumers, publishing);
    // The counters and the events go out in one pipeline; wait for the subscriber to see the last one.
    const eventsDeadline = performance.now() + 5000;
    while (events.seen.events < last.attempts && performance.now() < eventsDeadline) await sleep(20);
    // The gateway's work for the subscribers ends when the last of them has every event (or was ended).
    await live?.settle(last.attempts, 30_000);
    const end = Math.max(events.seen.lastAt, t0, ...(live?.states ?? []).map((x) => x.lastAt));
    const c1 = ctx.cpu();
    const seconds = (end - t0) / 1000;
    const batch = await scrapeBatches(
      consumers.map((c) => c.port),
      seconds,
    );
    const run = { ...opts, trueOrders, falseOrders, events: events.seen.events };
    const { final, verified } = await verifyRun(ctx, s, run, gql);

    const publishSeconds = (publishing.state.publishedAt - t0) / 1000;
    const result: PipelineResult = {
      name: opts.name,
      orders: opts.orders,
      consumers: opts.consumers,
      trueOrders,
      falseOrders,
      preloadedLogDocs: opts.preloaded?.docs ?? 0,
      sweeps: Math.floor((end - consumersStarted) / sweepIntervalMs) - Math.floor((t0 - consumersStarted) / sweepIntervalMs),
      seconds,
      ordersPerSecond: opts.orders / seconds,
      attempts: final.attempts,
      attemptsPerSecond: final.attempts / seconds,
      publishSeconds,
      publishRowsPerSecond: opts.orders / publishSeconds,
      batch,
      cpu: ctx.cpuBetween(c0, c1),
      ...(live ? { live: liveResult(live.states, final.attempts, verified.problems) } : {}),
      verified,
    };
    progress(
      `${opts.name}: ${fmt(result.ordersPerSecond)} orders/s, ${fmt(result.attemptsPerSecond)} attempts/s over ${fmt(seconds, 1)} s ` +
        `(publish phase ${fmt(publishSeconds, 1)} s; batches avg ${fmt(batch.avgSize)} msgs / ${fmt(batch.avgMs, 1)} ms, ${fmt(batch.inFlight, 2)} batches in flight per consumer)`,
    );
    return result;
  } finally {
    await live?.close();
    await events?.close();
    for (const c of consumers) await c.stop();
    await gateway?.stop();
    await world.dispose(s);
  }
}

export interface PublishOnlyResult {
  rows: number;
  seconds: number;
  rowsPerSecond: number;
  calls: number;
  queueDepth: number;
  rssBeforeMb: number;
  peakRssMb: number;
  peakSource: "VmHWM after clear_refs" | "VmRSS samples";
  cpu: CpuUsage;
}

/** Seeds with one INSERT … SELECT per system (the same row shape as seedOrders), so setup stays out of the time budget. */
async function bulkSeed(ctx: BenchContext, database: string, rows: number): Promise<number> {
  return ctx.world.withPg(database, async (c) => {
    const { rows: r } = await c.query<{ max: number }>(
      `with ins as (
         insert into orders (product, price, security_check)
         select (array['Keyboard','Mouse','Monitor','Laptop','Headset','Webcam','Desk lamp','Chair','USB hub','SSD 1TB',
                       'Router','Microphone','Docking station','Tablet','Smartphone','Charger','Backpack','Notebook','Pen set','Speaker'])[1 + floor(random() * 20)::int],
                round((1 + random() * 999)::numeric, 2), random() < 0.5
         from generate_series(1, $1) returning id)
       select max(id)::int as max from ins`,
      [rows],
    );
    return r[0]!.max;
  });
}

export async function runPublishOnly(ctx: BenchContext, rows: number): Promise<PublishOnlyResult> {
  const { world } = ctx;
  const s = await world.scenario("publish");
  let gateway: RunningGateway | undefined;
  try {
    progress(`publish: seeding ${fmt(rows)} pending rows (INSERT … SELECT generate_series)`);
    const per = split(rows);
    const lastIds = await Promise.all(
      SYSTEMS.map((sys) => bulkSeed(ctx, sys === "SYSTEM1" ? s.databases.system1 : s.databases.system2, per[sys])),
    );
    gateway = await ctx.startGateway(s);
    const gql = gateway.gql;
    const pid = gateway.pid;
    const before = memoryOf(pid);
    const hwmReset = resetPeakRss(pid);
    let sampled = before.rssMb;
    const stopSampling = every(100, () => {
      sampled = Math.max(sampled, memoryOf(pid).rssMb);
    });
    progress(`publish: publishPending on both systems, no consumer (gateway RSS ${fmt(before.rssMb)} MB before)`);
    const stopProgress = every(5000, async () => {
      const cursors = await world.redis.mget(SYSTEMS.map((sys) => `${s.config.redis.prefix}:cursor:${sys}`));
      const done = cursors.reduce((n, c) => n + Number(c ?? 0), 0);
      progress(`publish: ${fmt(done)}/${fmt(rows)} rows confirmed, gateway RSS ${fmt(memoryOf(pid).rssMb)} MB`);
    });
    const c0 = ctx.cpu();
    const t0 = performance.now();
    let results;
    try {
      results = await Promise.all(SYSTEMS.map((sys, i) => publishUpTo(gql, sys, lastIds[i]!)));
    } catch (err) {
      await sleep(200);
      if (gateway.exited())
        throw new Error(`the gateway exited while publishing (${gateway.exitReason()}): ${(err as Error).message}`, {
          cause: err,
        });
      throw err;
    } finally {
      stopProgress();
      stopSampling();
    }
    const seconds = (performance.now() - t0) / 1000;
    const c1 = ctx.cpu();
    const after = memoryOf(pid);
    sampled = Math.max(sampled, after.rssMb);
    const peak = hwmReset ? Math.max(after.hwmMb, sampled) : sampled;

    const conn = await amqp.connect(s.config.broker.url);
    let queueDepth = -1;
    try {
      const ch = await conn.createChannel();
      const primary = makeTopology(s.config).primary;
      for (let i = 0; i < 50 && queueDepth < rows; i++) {
        queueDepth = (await ch.checkQueue(primary)).messageCount;
        if (queueDepth < rows) await sleep(100);
      }
    } finally {
      await conn.close().catch(() => undefined);
    }
    const calls = results.reduce((n, r) => n + r.calls, 0);
    if (queueDepth !== rows) progress(`publish: VERIFICATION FAILED: primary queue holds ${queueDepth}, expected ${rows}`);
    const result: PublishOnlyResult = {
      rows,
      seconds,
      rowsPerSecond: rows / seconds,
      calls,
      queueDepth,
      rssBeforeMb: before.rssMb,
      peakRssMb: peak,
      peakSource: hwmReset ? "VmHWM after clear_refs" : "VmRSS samples",
      cpu: ctx.cpuBetween(c0, c1),
    };
    progress(`publish: ${fmt(result.rowsPerSecond)} rows/s over ${fmt(seconds, 1)} s, peak gateway RSS ${fmt(peak)} MB`);
    return result;
  } finally {
    await gateway?.stop();
    await world.dispose(s);
  }
}
