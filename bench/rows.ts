// The rows of the result table, one builder per step, in the order the table
// prints them; then one row per issue target and one per step that failed.
import { perMessage } from "./cpu-report.ts";
import type { Options } from "./options.ts";
import type { PipelineResult } from "./pipeline.ts";
import { fmt } from "./progress.ts";
import type { Results, StepErrors } from "./results.ts";
import type { Row } from "./table.ts";
import { cpuPer, type TargetCheck } from "./targets.ts";

export const TARGETS = { happy: 0.5, publishRatio: 0.7, publishRssMb: 200, historyRatio: 0.5, historyP99Ms: 25, logGrowth: 0.9 };

const ratio = (a: number, b: number) => (b > 0 ? a / b : NaN);
const r2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : "n/a");
const atLeast = (x: number, t: number): Row["result"] => (Number.isFinite(x) && x >= t ? "PASS" : "FAIL");
const verifiedResult = (p: PipelineResult, res: Row["result"]): Row["result"] => (p.verified.problems.length ? "FAIL" : res);
const info = (metric: string, value: string, baseline = "", rat = ""): Row => ({
  metric,
  value,
  baseline,
  ratio: rat,
  target: "",
  result: "info",
});

function rawRows(r: Results): Row[] {
  if (!r.raw) return [];
  return [
    info(`raw broker publish, ${fmt(r.raw.messages)} msgs (msg/s)`, fmt(r.raw.publishPerSecond)),
    info("raw broker consume only (msg/s)", fmt(r.raw.consumePerSecond)),
    info("raw broker publish+consume (msg/s)", fmt(r.raw.publishConsumePerSecond)),
  ];
}

function publishRows(r: Results): Row[] {
  const p = r.publish;
  if (!p) return [];
  const rawPub = r.raw?.publishPerSecond ?? NaN;
  const x = ratio(p.rowsPerSecond, rawPub);
  const rows: Row[] = [
    {
      metric: `publish only, ${fmt(p.rows)} rows (rows/s)`,
      value: fmt(p.rowsPerSecond),
      baseline: fmt(rawPub),
      ratio: r2(x),
      target: `>= ${TARGETS.publishRatio}`,
      result: p.queueDepth === p.rows ? atLeast(x, TARGETS.publishRatio) : "FAIL",
    },
  ];
  if (r.raw) {
    const rawCpu = perMessage(r.raw.cpu.publish, r.raw.messages).total;
    const pubCpu = perMessage(p.cpu, p.rows).total;
    rows.push(info("  CPU per row, all processes (µs; baseline per raw msg)", fmt(pubCpu), fmt(rawCpu), r2(rawCpu / pubCpu)));
  }
  rows.push({
    metric: `  gateway peak RSS while publishing (MB; ${fmt(p.rssBeforeMb)} before)`,
    value: fmt(p.peakRssMb),
    baseline: "",
    ratio: "",
    target: `< ${TARGETS.publishRssMb}`,
    result: p.peakRssMb < TARGETS.publishRssMb ? "PASS" : "FAIL",
  });
  return rows;
}

function scalingRows(r: Results): Row[] {
  const one = r.scaling?.find((s) => s.consumers === 1);
  return (r.scaling ?? []).map((s) => {
    const vs = one && s !== one;
    return {
      ...info(
        `scaling: ${s.consumers} consumer${s.consumers > 1 ? "s" : ""}, ${fmt(s.orders)} orders (orders/s)`,
        fmt(s.ordersPerSecond),
        vs ? fmt(one.ordersPerSecond) : "",
        vs ? r2(ratio(s.ordersPerSecond, one.ordersPerSecond)) : "",
      ),
      result: s.verified.problems.length ? "FAIL" : "info",
    };
  });
}

/** The live run against the one-consumer scaling run of the same size: what each subscriber costs the gateway. */
function liveRows(r: Results): Row[] {
  const l = r.live;
  if (!l?.live) return [];
  const one = r.scaling?.find((s) => s.consumers === 1 && s.orders === l.orders);
  const { subscribers, delivered, tooSlow } = l.live;
  const gateway = (p: PipelineResult) => perMessage(p.cpu, p.orders).groups.find(([g]) => g === "gateway")?.[1] ?? NaN;
  const rows: Row[] = [
    {
      ...info(
        `live: ${subscribers} processingEvents subscribers, ${fmt(l.orders)} orders (orders/s; baseline: scaling, 1 consumer)`,
        fmt(l.ordersPerSecond),
        one ? fmt(one.ordersPerSecond) : "",
        one ? r2(ratio(l.ordersPerSecond, one.ordersPerSecond)) : "",
      ),
      result: l.verified.problems.length ? "FAIL" : "info",
    },
    info(
      `  events each subscriber received (of ${fmt(l.attempts)}; ${tooSlow} ended SUBSCRIBER_TOO_SLOW)`,
      delivered.length ? `${fmt(Math.min(...delivered))}–${fmt(Math.max(...delivered))}` : "n/a",
    ),
  ];
  if (one) {
    const perSubscriber = (gateway(l) - gateway(one)) / subscribers;
    rows.push(
      info("  gateway CPU per event per subscriber (µs; the run's gateway CPU above the baseline's)", fmt(perSubscriber)),
    );
  }
  return rows;
}

function mixRows(r: Results, o: Options): Row[] {
  if (!r.mix) return [];
  const drain = info(`  time to drain (s; retry delay ${o.retryDelayMs} ms)`, fmt(r.mix.seconds, 1));
  if (r.mix.verified.problems.length) drain.result = "FAIL";
  return [
    info(`e2e seed mix, ${fmt(r.mix.orders)} orders (orders/s)`, fmt(r.mix.ordersPerSecond)),
    info(`  attempts (attempts/s; ${fmt(r.mix.attempts)} logged)`, fmt(r.mix.attemptsPerSecond)),
    drain,
  ];
}

function readRows(r: Results): Row[] {
  if (!r.read) return [];
  const { trivial, history, seconds } = r.read;
  const x = ratio(history.requestsPerSecond, trivial.requestsPerSecond);
  const none = history.requests === 0;
  return [
    info(`{ __typename }, ${r.read.connections} connections (req/s)`, fmt(trivial.requestsPerSecond)),
    info("  { __typename } p50 / p99 (ms)", `${fmt(trivial.p50Ms)} / ${fmt(trivial.p99Ms)}`),
    {
      metric: `messageHistory, ${fmt(r.read.logDocs)} log docs (req/s)`,
      value: none ? `< ${fmt(1 / seconds, 1)}` : fmt(history.requestsPerSecond, 1),
      baseline: fmt(trivial.requestsPerSecond),
      ratio: none ? "~0" : x < 0.01 ? x.toExponential(1) : r2(x),
      target: `>= ${TARGETS.historyRatio}`,
      result: history.mismatches > 0 ? "FAIL" : atLeast(x, TARGETS.historyRatio),
    },
    {
      metric: "  messageHistory p99 (ms)",
      value: none ? `> ${fmt(seconds * 1000)}` : fmt(history.p99Ms),
      baseline: "",
      ratio: "",
      target: `< ${TARGETS.historyP99Ms}`,
      result: history.requests > 0 && history.p99Ms < TARGETS.historyP99Ms ? "PASS" : "FAIL",
    },
    info("  messageHistory p50 (ms)", none ? `none done in ${seconds} s` : fmt(history.p50Ms)),
    info("  one messageHistory alone (ms)", fmt(r.read.serialHistoryMs)),
    info(
      `  its MongoDB call alone, ${r.read.driverAlone.inFlight} at once: bench driver CPU per lookup (µs)`,
      fmt(r.read.driverAlone.cpuUsPerLookup),
    ),
    ...(history.timeouts > 0 ? [info("  messageHistory timeouts (30 s)", fmt(history.timeouts))] : []),
    info(
      `megabyte of tokens refused, ${fmt(r.read.refused.requests)} one at a time: p50 / p99 (ms)`,
      `${fmt(r.read.refused.p50Ms, 1)} / ${fmt(r.read.refused.p99Ms, 1)}`,
    ),
    info("  gateway CPU per refusal (µs)", fmt(cpuPer(r.read.cpu.refused, "gateway", r.read.refused.requests))),
  ];
}

function happyRows(r: Results): Row[] {
  const rawForHappy = r.rawAgain ?? r.raw;
  const rows = r.rawAgain ? [info("raw broker publish+consume, again (msg/s)", fmt(r.rawAgain.publishConsumePerSecond))] : [];
  if (!r.happy) return rows;
  const base = rawForHappy?.publishConsumePerSecond ?? NaN;
  const x = ratio(r.happy.ordersPerSecond, base);
  const rawCpu = rawForHappy ? perMessage(rawForHappy.cpu.publishConsume, rawForHappy.messages).total : NaN;
  const happyCpu = perMessage(r.happy.cpu, r.happy.orders).total;
  rows.push(
    {
      metric: `e2e happy path, ${fmt(r.happy.orders)} orders (orders/s)`,
      value: fmt(r.happy.ordersPerSecond),
      baseline: fmt(base),
      ratio: r2(x),
      target: `>= ${TARGETS.happy}`,
      result: verifiedResult(r.happy, atLeast(x, TARGETS.happy)),
    },
    info("  publish phase within it (rows/s)", fmt(r.happy.publishRowsPerSecond)),
    info("  CPU per order, all processes (µs; baseline per raw msg)", fmt(happyCpu), fmt(rawCpu), r2(rawCpu / happyCpu)),
  );
  return rows;
}

function logGrowthRows(r: Results): Row[] {
  const g = r.logGrowth;
  if (!g) return [];
  const x = ratio(g.ordersPerSecond, r.happy?.ordersPerSecond ?? NaN);
  const rows: Row[] = [
    {
      metric: `happy path on ${fmt(g.preloadedLogDocs)} log docs (orders/s)`,
      value: fmt(g.ordersPerSecond),
      baseline: fmt(r.happy?.ordersPerSecond ?? NaN),
      ratio: r2(x),
      target: `>= ${TARGETS.logGrowth}`,
      result: verifiedResult(g, atLeast(x, TARGETS.logGrowth)),
    },
  ];
  if (r.happy) {
    const big = perMessage(g.cpu, g.orders).total;
    const empty = perMessage(r.happy.cpu, r.happy.orders).total;
    rows.push(info("  CPU per order, all processes (µs; baseline on empty log)", fmt(big), fmt(empty), r2(empty / big)));
  }
  if (g.sweeps > 0) rows.push(info("  sweeper intervals elapsed in the run (whole-log passes)", fmt(g.sweeps)));
  return rows;
}

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

const errorRow = ([step, message]: [string, string]): Row => ({
  metric: `${step}: ${message.split("\n")[0]!.slice(0, 90)}`,
  value: "",
  baseline: "",
  ratio: "",
  target: "",
  result: "ERROR",
});

export function buildRows(r: Results, o: Options, errors: StepErrors, targets: TargetCheck[]): Row[] {
  return [
    ...rawRows(r),
    ...publishRows(r),
    ...scalingRows(r),
    ...liveRows(r),
    ...mixRows(r, o),
    ...readRows(r),
    ...happyRows(r),
    ...logGrowthRows(r),
    ...targets.map(targetRow),
    ...(r.profile
      ? [info(`profiled happy path, ${fmt(r.profile.run.orders)} orders (orders/s)`, fmt(r.profile.run.ordersPerSecond))]
      : []),
    ...Object.entries(errors).map(errorRow),
  ];
}
