// `make bench` / `npm run bench -- [--quick] [--n N] ...`: measures the pipeline
// against the raw broker on the developer's running services, in isolated
// databases, queues, keys and Mongo databases that it removes at the end.
// Prints a Markdown table (stdout), progress (stderr), and writes
// bench/results/<timestamp>.json and bench/results/latest.json.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

import { batchSteps, type StepTiming, VARIANTS } from "./batch-steps.ts";
import { createContext } from "./context.ts";
import { type CpuUsage, describeCores, OTHER, REAPED } from "./machine.ts";
import { ISSUE_SIZES, type Options, parseOptions, type Step, UsageError } from "./options.ts";
import { type PipelineResult, type PublishOnlyResult, runPipeline, runPublishOnly } from "./pipeline.ts";
import { killChildren, LAUNCH, ROOT } from "./processes.ts";
import { formatSummary, type ProfileSummary, summarise } from "./profile.ts";
import { fmt, progress } from "./progress.ts";
import { rawBroker, type RawResult } from "./raw-broker.ts";
import { fillLog, type LogFill, type ReadResult, runReadSide, settleLog } from "./read-side.ts";
import { renderTable, type Row } from "./table.ts";
import { type TargetCheck, targetChecks } from "./targets.ts";
import { createWorld, type Scenario } from "./world.ts";

interface Results {
  raw?: RawResult;
  /** The raw baseline again, right before the happy path it is compared with. */
  rawAgain?: RawResult;
  happy?: PipelineResult;
  mix?: PipelineResult;
  scaling?: PipelineResult[];
  publish?: PublishOnlyResult;
  logFill?: Omit<LogFill, "sampleMessageIds">;
  read?: ReadResult;
  logGrowth?: PipelineResult;
  profile?: { run: PipelineResult; summaries: ProfileSummary[]; steps: StepTiming[] };
}

const TARGETS = { happy: 0.5, publishRatio: 0.7, publishRssMb: 200, historyRatio: 0.5, historyP99Ms: 25, logGrowth: 0.9 };

function scaledNotes(o: Options): string[] {
  const notes: string[] = [];
  const note = (steps: Step[], what: string, used: number, issue: number, why: string) => {
    if (used < issue && steps.some((s) => o.steps.has(s)))
      notes.push(`${what}: ${fmt(used)} instead of the asked-for ${fmt(issue)} (${why})`);
  };
  const budget = o.quick ? "--quick" : "to fit the 10-minute budget on this 2-core machine; see BENCHMARKS.md";
  note(["happy", "log-growth", "profile"], "happy-path and log-growth orders", o.n, ISSUE_SIZES.n, o.quick ? "--quick" : "--n");
  note(
    ["mix"],
    "seed-mix orders",
    o.mixN,
    ISSUE_SIZES.mixN,
    o.quick ? "--quick" : `the mix costs ~4 attempts per order; ${budget}`,
  );
  note(["scaling"], "orders per scaling run", o.scalingN, ISSUE_SIZES.scalingN, budget);
  note(["publish"], "rows published without a consumer", o.publishRows, ISSUE_SIZES.publishRows, budget);
  note(["read", "log-growth"], "attempt-log documents", o.logDocs, ISSUE_SIZES.logDocs, budget);
  return notes;
}

function launchLine(o: Options): string {
  const { nodeArgs, env } = LAUNCH["gateway/src/main.ts"];
  const vars = Object.entries(env).map(([k, v]) => `${k}=${v} `);
  return `${vars.join("")}node ${(o.gatewayNodeArgs ?? nodeArgs).join(" ")} gateway/src/main.ts`;
}

const ratio = (a: number, b: number) => (b > 0 ? a / b : NaN);
const r2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : "n/a");
const atLeast = (x: number, t: number): Row["result"] => (Number.isFinite(x) && x >= t ? "PASS" : "FAIL");

function targetRow(t: TargetCheck): Row {
  const v = (x: number) => (Number.isFinite(x) ? fmt(x, x < 10 ? 1 : 0) : "n/a");
  return {
    metric: `target ${t.id}: ${t.what} (${t.unit})`,
    value: v(t.value),
    baseline: v(t.baseline),
    ratio: r2(t.ratio),
    target: `${t.atMost ? "<=" : ">="} ${t.limit}`,
    result: t.pass ? "PASS" : "FAIL",
  };
}

function buildRows(r: Results, o: Options, errors: Record<string, string>, targets: TargetCheck[]): Row[] {
  const rows: Row[] = [];
  const info = (metric: string, value: string, baseline = "", rat = ""): Row => ({
    metric,
    value,
    baseline,
    ratio: rat,
    target: "",
    result: "info",
  });
  const verifiedResult = (p: PipelineResult, res: Row["result"]): Row["result"] => (p.verified.problems.length ? "FAIL" : res);

  if (r.raw) {
    rows.push(info(`raw broker publish, ${fmt(r.raw.messages)} msgs (msg/s)`, fmt(r.raw.publishPerSecond)));
    rows.push(info("raw broker consume only (msg/s)", fmt(r.raw.consumePerSecond)));
    rows.push(info("raw broker publish+consume (msg/s)", fmt(r.raw.publishConsumePerSecond)));
  }
  if (r.publish) {
    const rawPub = r.raw?.publishPerSecond ?? NaN;
    const x = ratio(r.publish.rowsPerSecond, rawPub);
    rows.push({
      metric: `publish only, ${fmt(r.publish.rows)} rows (rows/s)`,
      value: fmt(r.publish.rowsPerSecond),
      baseline: fmt(rawPub),
      ratio: r2(x),
      target: `>= ${TARGETS.publishRatio}`,
      result: r.publish.queueDepth === r.publish.rows ? atLeast(x, TARGETS.publishRatio) : "FAIL",
    });
    if (r.raw) {
      const rawCpu = perMessage(r.raw.cpu.publish, r.raw.messages).total;
      const pubCpu = perMessage(r.publish.cpu, r.publish.rows).total;
      rows.push(info("  CPU per row, all processes (µs; baseline per raw msg)", fmt(pubCpu), fmt(rawCpu), r2(rawCpu / pubCpu)));
    }
    rows.push({
      metric: `  gateway peak RSS while publishing (MB; ${fmt(r.publish.rssBeforeMb)} before)`,
      value: fmt(r.publish.peakRssMb),
      baseline: "",
      ratio: "",
      target: `< ${TARGETS.publishRssMb}`,
      result: r.publish.peakRssMb < TARGETS.publishRssMb ? "PASS" : "FAIL",
    });
  }
  if (r.scaling?.length) {
    const one = r.scaling.find((s) => s.consumers === 1);
    for (const s of r.scaling) {
      const vs = one && s !== one;
      rows.push({
        ...info(
          `scaling: ${s.consumers} consumer${s.consumers > 1 ? "s" : ""}, ${fmt(s.orders)} orders (orders/s)`,
          fmt(s.ordersPerSecond),
          vs ? fmt(one.ordersPerSecond) : "",
          vs ? r2(ratio(s.ordersPerSecond, one.ordersPerSecond)) : "",
        ),
        result: s.verified.problems.length ? "FAIL" : "info",
      });
    }
  }
  if (r.mix) {
    rows.push(info(`e2e seed mix, ${fmt(r.mix.orders)} orders (orders/s)`, fmt(r.mix.ordersPerSecond)));
    rows.push(info(`  attempts (attempts/s; ${fmt(r.mix.attempts)} logged)`, fmt(r.mix.attemptsPerSecond)));
    rows.push(info(`  time to drain (s; retry delay ${o.retryDelayMs} ms)`, fmt(r.mix.seconds, 1)));
    if (r.mix.verified.problems.length) rows[rows.length - 1]!.result = "FAIL";
  }
  if (r.read) {
    const { trivial, history } = r.read;
    rows.push(info(`{ __typename }, ${r.read.connections} connections (req/s)`, fmt(trivial.requestsPerSecond)));
    rows.push(info("  { __typename } p50 / p99 (ms)", `${fmt(trivial.p50Ms)} / ${fmt(trivial.p99Ms)}`));
    const x = ratio(history.requestsPerSecond, trivial.requestsPerSecond);
    const none = history.requests === 0;
    rows.push({
      metric: `messageHistory, ${fmt(r.read.logDocs)} log docs (req/s)`,
      value: none ? `< ${fmt(1 / r.read.seconds, 1)}` : fmt(history.requestsPerSecond, 1),
      baseline: fmt(trivial.requestsPerSecond),
      ratio: none ? "~0" : x < 0.01 ? x.toExponential(1) : r2(x),
      target: `>= ${TARGETS.historyRatio}`,
      result: history.mismatches > 0 ? "FAIL" : atLeast(x, TARGETS.historyRatio),
    });
    rows.push({
      metric: "  messageHistory p99 (ms)",
      value: none ? `> ${fmt(r.read.seconds * 1000)}` : fmt(history.p99Ms),
      baseline: "",
      ratio: "",
      target: `< ${TARGETS.historyP99Ms}`,
      result: history.requests > 0 && history.p99Ms < TARGETS.historyP99Ms ? "PASS" : "FAIL",
    });
    rows.push(info("  messageHistory p50 (ms)", none ? `none done in ${r.read.seconds} s` : fmt(history.p50Ms)));
    rows.push(info("  one messageHistory alone (ms)", fmt(r.read.serialHistoryMs)));
    if (history.timeouts > 0) rows.push(info("  messageHistory timeouts (30 s)", fmt(history.timeouts)));
  }
  const rawForHappy = r.rawAgain ?? r.raw;
  if (r.rawAgain) rows.push(info("raw broker publish+consume, again (msg/s)", fmt(r.rawAgain.publishConsumePerSecond)));
  if (r.happy) {
    const base = rawForHappy?.publishConsumePerSecond ?? NaN;
    const x = ratio(r.happy.ordersPerSecond, base);
    rows.push({
      metric: `e2e happy path, ${fmt(r.happy.orders)} orders (orders/s)`,
      value: fmt(r.happy.ordersPerSecond),
      baseline: fmt(base),
      ratio: r2(x),
      target: `>= ${TARGETS.happy}`,
      result: verifiedResult(r.happy, atLeast(x, TARGETS.happy)),
    });
    rows.push(info("  publish phase within it (rows/s)", fmt(r.happy.publishRowsPerSecond)));
    const rawCpu = rawForHappy ? perMessage(rawForHappy.cpu.publishConsume, rawForHappy.messages).total : NaN;
    const happyCpu = perMessage(r.happy.cpu, r.happy.orders).total;
    rows.push(
      info("  CPU per order, all processes (µs; baseline per raw msg)", fmt(happyCpu), fmt(rawCpu), r2(rawCpu / happyCpu)),
    );
  }
  if (r.logGrowth) {
    const empty = r.happy?.ordersPerSecond ?? NaN;
    const x = ratio(r.logGrowth.ordersPerSecond, empty);
    rows.push({
      metric: `happy path on ${fmt(r.logGrowth.preloadedLogDocs)} log docs (orders/s)`,
      value: fmt(r.logGrowth.ordersPerSecond),
      baseline: fmt(empty),
      ratio: r2(x),
      target: `>= ${TARGETS.logGrowth}`,
      result: verifiedResult(r.logGrowth, atLeast(x, TARGETS.logGrowth)),
    });
    if (r.happy) {
      const big = perMessage(r.logGrowth.cpu, r.logGrowth.orders).total;
      const empty = perMessage(r.happy.cpu, r.happy.orders).total;
      rows.push(info("  CPU per order, all processes (µs; baseline on empty log)", fmt(big), fmt(empty), r2(empty / big)));
    }
    if (r.logGrowth.sweeps > 0)
      rows.push(info("  sweeper intervals elapsed in the run (whole-log passes)", fmt(r.logGrowth.sweeps)));
  }
  rows.push(...targets.map(targetRow));
  if (r.profile)
    rows.push(info(`profiled happy path, ${fmt(r.profile.run.orders)} orders (orders/s)`, fmt(r.profile.run.ordersPerSecond)));
  for (const [step, message] of Object.entries(errors))
    rows.push({
      metric: `${step}: ${message.split("\n")[0]!.slice(0, 90)}`,
      value: "",
      baseline: "",
      ratio: "",
      target: "",
      result: "ERROR",
    });
  return rows;
}

/** CPU microseconds per message, by group, leaving out the machine's other load and PostgreSQL children of unknown origin. */
function perMessage(u: CpuUsage, count: number): { total: number; groups: [string, number][] } {
  const groups = Object.entries(u.groups)
    .filter(([g]) => g !== OTHER && g !== REAPED)
    .map(([g, s]): [string, number] => [g, (s * 1e6) / count])
    .sort((x, y) => y[1] - x[1]);
  return { total: groups.reduce((n, [, us]) => n + us, 0), groups };
}

function cpuLines(r: Results): {
  cores: string[];
  perMessage: string[];
  json: Record<string, { total: number; groups: [string, number][] }>;
} {
  const cores: string[] = [];
  const per: string[] = [];
  const json: Record<string, { total: number; groups: [string, number][] }> = {};
  const add = (name: string, u: CpuUsage | undefined, count?: number, unit = "msg") => {
    if (!u) return;
    cores.push(`  ${name.padEnd(22)} machine ${u.machineCores.toFixed(2)} cores busy: ${describeCores(u)}`);
    if (!count) return;
    const p = perMessage(u, count);
    json[name] = p;
    const parts = p.groups.filter(([, us]) => us >= 3).map(([g, us]) => `${g} ${fmt(us)}`);
    per.push(`  ${name.padEnd(22)} ${fmt(p.total).padStart(5)} µs per ${unit}: ${parts.join(", ")}`);
  };
  add("raw publish", r.raw?.cpu.publish, r.raw?.messages);
  add("raw publish+consume", r.raw?.cpu.publishConsume, r.raw?.messages);
  add("publish only", r.publish?.cpu, r.publish?.rows, "row");
  for (const s of r.scaling ?? []) add(`scaling ${s.consumers}`, s.cpu, s.orders, "order");
  add("e2e seed mix", r.mix?.cpu, r.mix?.attempts, "attempt");
  add("read { __typename }", r.read?.cpu.trivial, r.read?.trivial.requests, "request");
  add("read messageHistory", r.read?.cpu.history, r.read?.history.requests, "request");
  add("raw again, both", r.rawAgain?.cpu.publishConsume, r.rawAgain?.messages);
  add("e2e happy", r.happy?.cpu, r.happy?.orders, "order");
  add("happy on big log", r.logGrowth?.cpu, r.logGrowth?.orders, "order");
  add("profiled happy", r.profile?.run.cpu, r.profile?.run.orders, "order");
  return { cores, perMessage: per, json };
}

async function main(): Promise<number> {
  let options: Options;
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(err.message);
      return 2;
    }
    throw err;
  }
  const startedAt = new Date();
  const t0 = performance.now();
  const world = await createWorld({ keep: options.keep });
  const ctx = createContext(world, options);
  let cleaning: Promise<void> | undefined;
  const cleanup = () => (cleaning ??= world.cleanup());
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      progress(`${signal}: stopping children and removing the run's data`);
      killChildren();
      void cleanup().finally(() => process.exit(130));
    });
  }

  const scaled = scaledNotes(options);
  for (const n of scaled) progress(`scaled: ${n}`);
  progress(`steps: ${[...options.steps].join(", ")}; logs and profiles in ${path.relative(ROOT, ctx.outDir)}`);
  const results: Results = {};
  const errors: Record<string, string> = {};
  const step = async (name: string, fn: () => Promise<void>) => {
    try {
      await fn();
    } catch (err) {
      errors[name] = (err as Error).message;
      progress(`${name} FAILED: ${(err as Error).stack ?? err}`);
    }
  };
  const has = (s: Parameters<typeof options.steps.has>[0]) => options.steps.has(s);
  const base = world.base;

  // Each ratio compares two measurements taken next to each other, because the load
  // from other work on this machine drifts: raw -> publish, the scaling runs
  // together, trivial -> messageHistory, raw again -> happy path -> happy on a big log.
  let readScenario: Scenario | undefined;
  const raw = async (key: "raw" | "rawAgain") => {
    const r = await rawBroker({
      config: base,
      n: options.rawN,
      queuePrefix: `bench-${world.id}-${key}`,
      trackQueue: world.trackQueue,
      cpu: () => ctx.cpu(),
      cpuBetween: ctx.cpuBetween,
    });
    results[key] = r;
    progress(
      `raw: publish ${fmt(r.publishPerSecond)}/s, consume ${fmt(r.consumePerSecond)}/s, both ${fmt(r.publishConsumePerSecond)}/s`,
    );
  };
  try {
    if (has("raw")) await step("raw", () => raw("raw"));
    if (has("publish"))
      await step("publish", async () => {
        results.publish = await runPublishOnly(ctx, options.publishRows);
      });
    if (has("scaling"))
      await step("scaling", async () => {
        results.scaling = [];
        for (const k of options.consumerCounts)
          results.scaling.push(
            await runPipeline(ctx, { name: `scale${k}`, orders: options.scalingN, ratio: 1, consumers: k, maxAttempts: 1 }),
          );
      });
    if (has("mix"))
      await step("mix", async () => {
        results.mix = await runPipeline(ctx, {
          name: "mix",
          orders: options.mixN,
          ratio: 0.5,
          consumers: 1,
          maxAttempts: base.retry.maxAttempts,
          retryDelayMs: options.retryDelayMs,
        });
      });
    let fill: LogFill | undefined;
    if (has("read") || has("log-growth")) {
      const s = (readScenario = await world.scenario("read"));
      await step("log fill", async () => {
        progress(
          `log: writing ${fmt(options.logDocs)} attempt documents with insertMany into ${s.config.mongo.database}.message_logs`,
        );
        fill = await fillLog(ctx, s, options.logDocs);
        const { sampleMessageIds: _ids, ...info } = fill;
        results.logFill = info;
        progress(`log: ${fmt(fill.docs)} documents in ${fmt(fill.seconds, 1)} s (${fmt(fill.docsPerSecond)}/s)`);
      });
      if (fill)
        await step("log vacuum", async () => {
          const seconds = await settleLog(ctx, s);
          if (seconds > 0)
            progress(`log: VACUUM (ANALYZE) of the log's table on FerretDB's PostgreSQL took ${fmt(seconds, 1)} s`);
        });
      if (fill && has("read"))
        await step("read", async () => {
          results.read = await runReadSide(ctx, s, fill!);
        });
    }
    if (has("happy")) {
      if (has("raw")) await step("raw (again)", () => raw("rawAgain"));
      await step("happy", async () => {
        results.happy = await runPipeline(ctx, { name: "happy", orders: options.n, ratio: 1, consumers: 1, maxAttempts: 1 });
      });
    }
    if (fill && has("log-growth")) {
      const preloaded = { database: fill.database, docs: fill.docs };
      await step("log-growth", async () => {
        results.logGrowth = await runPipeline(ctx, {
          name: "loggrowth",
          orders: options.n,
          ratio: 1,
          consumers: 1,
          maxAttempts: 1,
          preloaded,
        });
      });
    }
    if (has("profile"))
      await step("profile", async () => {
        const run = await runPipeline(ctx, {
          name: "profile",
          orders: options.n,
          ratio: 1,
          consumers: 1,
          maxAttempts: 1,
          cpuProf: true,
        });
        const dir = path.join(ctx.outDir, "profiles");
        const summaries = fs
          .readdirSync(dir)
          .filter((f) => f.endsWith(".cpuprofile"))
          .map((f) => summarise(path.join(dir, f)));
        for (const s of summaries) progress(`profile:\n${formatSummary(s)}`);
        const s = await world.scenario("steps", { MAX_ATTEMPTS: "1" });
        try {
          const runs = [
            ...VARIANTS.map((variant) => ({ variant, size: 250 })),
            { variant: "as-shipped" as const, size: 1000 },
            { variant: "parallel" as const, size: 1000 },
          ];
          const steps = await batchSteps(s.config, runs, options.quick ? 5000 : 20000);
          results.profile = { run, summaries, steps };
        } finally {
          await world.dispose(s);
        }
      });
  } finally {
    killChildren();
    if (readScenario) await world.dispose(readScenario).catch(() => undefined);
    progress("cleaning up the run's databases, queues, keys and Mongo databases");
    await cleanup();
  }

  const seconds = (performance.now() - t0) / 1000;
  const targets = targetChecks(results);
  const rows = buildRows(results, options, errors, targets);
  const table = renderTable(rows);
  const cpu = cpuLines(results);
  const out = [
    "",
    `tentativa benchmark ${world.id}${options.label ? ` (${options.label})` : ""}: ${startedAt.toISOString()}, ${fmt(seconds)} s, ` +
      `${os.availableParallelism()} cores, node ${process.version}${options.quick ? ", --quick" : ""}`,
    ...(Object.keys(options.consumerEnv).length ? [`consumer settings: ${JSON.stringify(options.consumerEnv)}`] : []),
    ...(Object.keys(options.gatewayEnv).length ? [`gateway settings: ${JSON.stringify(options.gatewayEnv)}`] : []),
    `gateway launched as: ${launchLine(options)}`,
    "",
    table,
    "",
    ...(scaled.length ? ["Scaled down:", ...scaled.map((n) => `  - ${n}`), ""] : []),
    "CPU by process during each measurement (cores; 'other' is load from outside this run):",
    ...cpu.cores,
    "",
    "CPU time per message, this run's processes and the services it uses (what bounds a rate on a saturated machine):",
    ...cpu.perMessage,
    "",
  ];
  console.log(out.join("\n"));

  const dir = path.join(ROOT, "bench", "results");
  fs.mkdirSync(dir, { recursive: true });
  const json = JSON.stringify(
    {
      runId: world.id,
      label: options.label ?? null,
      startedAt: startedAt.toISOString(),
      seconds,
      machine: { cores: os.availableParallelism(), node: process.version, loadavg: os.loadavg() },
      options: { ...options, steps: [...options.steps] },
      scaled,
      targets: TARGETS,
      issueTargets: targets,
      cpuPerMessageMicros: cpu.json,
      table: rows,
      results,
      errors,
    },
    null,
    2,
  );
  const file = path.join(dir, `${startedAt.toISOString().replace(/[:.]/g, "-")}.json`);
  fs.writeFileSync(file, json);
  fs.writeFileSync(path.join(dir, "latest.json"), json);
  progress(`wrote ${path.relative(ROOT, file)} and bench/results/latest.json`);
  return Object.keys(errors).length ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(`bench: ${(err as Error).stack ?? err}`);
    killChildren();
    process.exit(1);
  },
);
