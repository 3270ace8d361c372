// The steps of a run, in the order that keeps each ratio's two measurements next
// to each other (the load from other work on this machine drifts): raw -> publish,
// the scaling runs together, trivial -> messageHistory, raw again -> happy path ->
// happy on a big log. A step that throws is recorded and the next one runs.
import fs from "node:fs";
import path from "node:path";

import { batchSteps, VARIANTS } from "./batch-steps.ts";
import type { BenchContext } from "./context.ts";
import { type PipelineResult, type PipelineRun, runPipeline, runPublishOnly } from "./pipeline.ts";
import { killChildren } from "./processes.ts";
import { formatSummary, summarise } from "./profile.ts";
import { fmt, progress } from "./progress.ts";
import { rawBroker } from "./raw-broker.ts";
import { fillLog, type LogFill, runReadSide, settleLog } from "./read-side.ts";
import type { Results, StepErrors } from "./results.ts";
import type { Scenario } from "./world.ts";

/** A run of orders that all succeed at their first attempt, through one consumer. */
const happyRun = (ctx: BenchContext, name: string, extra: Partial<PipelineRun> = {}): Promise<PipelineResult> =>
  runPipeline(ctx, { name, orders: ctx.options.n, ratio: 1, consumers: 1, maxAttempts: 1, ...extra });

async function measureRaw(ctx: BenchContext, results: Results, key: "raw" | "rawAgain"): Promise<void> {
  const { world } = ctx;
  const r = await rawBroker({
    config: world.base,
    n: ctx.options.rawN,
    queuePrefix: `bench-${world.id}-${key}`,
    trackQueue: world.trackQueue,
    cpu: () => ctx.cpu(),
    cpuBetween: ctx.cpuBetween,
  });
  results[key] = r;
  progress(
    `raw: publish ${fmt(r.publishPerSecond)}/s, consume ${fmt(r.consumePerSecond)}/s, both ${fmt(r.publishConsumePerSecond)}/s`,
  );
}

async function measureScaling(ctx: BenchContext, results: Results): Promise<void> {
  results.scaling = [];
  for (const k of ctx.options.consumerCounts)
    results.scaling.push(
      await runPipeline(ctx, { name: `scale${k}`, orders: ctx.options.scalingN, ratio: 1, consumers: k, maxAttempts: 1 }),
    );
}

async function measureMix(ctx: BenchContext, results: Results): Promise<void> {
  results.mix = await runPipeline(ctx, {
    name: "mix",
    orders: ctx.options.mixN,
    ratio: 0.5,
    consumers: 1,
    maxAttempts: ctx.world.base.retry.maxAttempts,
    retryDelayMs: ctx.options.retryDelayMs,
  });
}

/** Fills the read scenario's attempt log and settles its table; undefined when the fill failed. */
async function fillReadLog(ctx: BenchContext, s: Scenario, results: Results, step: Step): Promise<LogFill | undefined> {
  let fill: LogFill | undefined;
  await step("log fill", async () => {
    progress(
      `log: writing ${fmt(ctx.options.logDocs)} attempt documents with insertMany into ${s.config.mongo.database}.message_logs`,
    );
    fill = await fillLog(ctx, s, ctx.options.logDocs);
    const { sampleMessageIds: _ids, ...info } = fill;
    results.logFill = info;
    progress(`log: ${fmt(fill.docs)} documents in ${fmt(fill.seconds, 1)} s (${fmt(fill.docsPerSecond)}/s)`);
  });
  if (!fill) return undefined;
  await step("log vacuum", async () => {
    const seconds = await settleLog(ctx, s);
    if (seconds > 0) progress(`log: VACUUM (ANALYZE) of the log's table on FerretDB's PostgreSQL took ${fmt(seconds, 1)} s`);
  });
  return fill;
}

async function measureProfile(ctx: BenchContext, results: Results): Promise<void> {
  const run = await happyRun(ctx, "profile", { cpuProf: true });
  const dir = path.join(ctx.outDir, "profiles");
  const summaries = fs
    .readdirSync(dir)
    .filter((f) => f.endsWith(".cpuprofile"))
    .map((f) => summarise(path.join(dir, f)));
  for (const s of summaries) progress(`profile:\n${formatSummary(s)}`);
  const s = await ctx.world.scenario("steps", { MAX_ATTEMPTS: "1" });
  try {
    const runs = [
      ...VARIANTS.map((variant) => ({ variant, size: 250 })),
      { variant: "as-shipped" as const, size: 1000 },
      { variant: "parallel" as const, size: 1000 },
    ];
    const steps = await batchSteps(s.config, runs, ctx.options.quick ? 5000 : 20000);
    results.profile = { run, summaries, steps };
  } finally {
    await ctx.world.dispose(s);
  }
}

type Step = (name: string, fn: () => Promise<void>) => Promise<void>;

/** Runs the chosen steps into `results`; what a step threw goes into `errors`. */
export async function runSteps(ctx: BenchContext, results: Results, errors: StepErrors): Promise<void> {
  const { options, world } = ctx;
  const has = (s: Parameters<typeof options.steps.has>[0]) => options.steps.has(s);
  const step: Step = async (name, fn) => {
    try {
      await fn();
    } catch (err) {
      errors[name] = (err as Error).message;
      progress(`${name} FAILED: ${(err as Error).stack ?? err}`);
    }
  };
  let readScenario: Scenario | undefined;
  try {
    if (has("raw")) await step("raw", () => measureRaw(ctx, results, "raw"));
    if (has("publish"))
      await step("publish", async () => void (results.publish = await runPublishOnly(ctx, options.publishRows)));
    if (has("scaling")) await step("scaling", () => measureScaling(ctx, results));
    if (has("live"))
      await step("live", async () => {
        const run = { name: "live", orders: options.scalingN, ratio: 1, consumers: 1, maxAttempts: 1 };
        results.live = await runPipeline(ctx, { ...run, subscribers: options.liveSubscribers });
      });
    if (has("mix")) await step("mix", () => measureMix(ctx, results));
    let fill: LogFill | undefined;
    if (has("read") || has("log-growth")) {
      // autocannon's connections all come from one address, which the gateway limits like any client's.
      const clientConnections = String(Math.max(256, options.connections + 16));
      const s = (readScenario = await world.scenario("read", { GATEWAY_CLIENT_CONNECTIONS: clientConnections }));
      fill = await fillReadLog(ctx, s, results, step);
      if (fill && has("read")) await step("read", async () => void (results.read = await runReadSide(ctx, s, fill!)));
    }
    if (has("happy")) {
      if (has("raw")) await step("raw (again)", () => measureRaw(ctx, results, "rawAgain"));
      await step("happy", async () => void (results.happy = await happyRun(ctx, "happy")));
    }
    if (fill && has("log-growth")) {
      const preloaded = { database: fill.database, docs: fill.docs };
      await step("log-growth", async () => void (results.logGrowth = await happyRun(ctx, "loggrowth", { preloaded })));
    }
    if (has("profile")) await step("profile", () => measureProfile(ctx, results));
  } finally {
    killChildren();
    if (readScenario) await world.dispose(readScenario).catch(() => undefined);
  }
}
