// The CPU and latency targets of issue 16, each a ratio of two measurements of
// the same run (so the machine's speed cancels), derived from what the steps
// already measured. A target whose steps did not run is left out.
import { type CpuUsage } from "./machine.ts";
import type { PipelineResult, PublishOnlyResult } from "./pipeline.ts";
import type { RawResult } from "./raw-broker.ts";
import type { ReadResult } from "./read-side.ts";

export interface TargetInputs {
  raw?: RawResult;
  rawAgain?: RawResult;
  publish?: PublishOnlyResult;
  scaling?: PipelineResult[];
  read?: ReadResult;
  happy?: PipelineResult;
}

export interface TargetCheck {
  /** "1", "2a", ...: the target's number in the issue. */
  id: string;
  what: string;
  /** The measured side and the baseline it is compared with, in the unit named by `unit`. */
  value: number;
  baseline: number;
  unit: string;
  ratio: number;
  /** `ratio <= limit` passes when `atMost`, `ratio >= limit` otherwise. */
  limit: number;
  atMost: boolean;
  pass: boolean;
}

/** CPU microseconds of one process group per unit of work. */
export function cpuPer(u: CpuUsage, group: string, count: number): number {
  return count > 0 ? ((u.groups[group] ?? 0) * 1e6) / count : NaN;
}

/** `unverified`: the run behind the value lost or duplicated work, so it cannot pass. */
function check(c: Omit<TargetCheck, "ratio" | "pass">, unverified = false): TargetCheck {
  const ratio = c.baseline > 0 ? c.value / c.baseline : NaN;
  const pass = !unverified && Number.isFinite(ratio) && (c.atMost ? ratio <= c.limit : ratio >= c.limit);
  return { ...c, ratio, pass };
}

const unverified = (...runs: (PipelineResult | undefined)[]) => runs.some((p) => p && p.verified.problems.length > 0);

/** Targets 1, 2a and 2b: our processes' CPU per unit against the bench driver's and against themselves. */
function cpuTargets(r: TargetInputs, rawForHappy: RawResult | undefined): TargetCheck[] {
  const out: TargetCheck[] = [];
  if (r.happy && rawForHappy)
    out.push(
      check({
        id: "1",
        what: "consumer CPU per happy-path attempt vs bench driver CPU per raw publish+consume message",
        value: cpuPer(r.happy.cpu, "consumer", r.happy.attempts),
        baseline: cpuPer(rawForHappy.cpu.publishConsume, "bench driver", rawForHappy.messages),
        unit: "µs",
        limit: 1.0,
        atMost: true,
      }),
    );
  if (r.happy && r.publish)
    out.push(
      check({
        id: "2a",
        what: "gateway CPU per happy-path order vs its CPU per row published alone",
        value: cpuPer(r.happy.cpu, "gateway", r.happy.orders),
        baseline: cpuPer(r.publish.cpu, "gateway", r.publish.rows),
        unit: "µs",
        limit: 1.2,
        atMost: true,
      }),
    );
  if (r.publish && r.raw)
    out.push(
      check({
        id: "2b",
        what: "gateway CPU per row published alone vs bench driver CPU per raw publish",
        value: cpuPer(r.publish.cpu, "gateway", r.publish.rows),
        baseline: cpuPer(r.raw.cpu.publish, "bench driver", r.raw.messages),
        unit: "µs",
        limit: 1.5,
        atMost: true,
      }),
    );
  return out;
}

/** Targets 3a and 3b: one indexed lookup against a trivial request. */
function readTargets(read: ReadResult | undefined): TargetCheck[] {
  if (!read) return [];
  return [
    check({
      id: "3a",
      what: "gateway CPU per messageHistory vs per { __typename }",
      value: cpuPer(read.cpu.history, "gateway", read.history.requests),
      baseline: cpuPer(read.cpu.trivial, "gateway", read.trivial.requests),
      unit: "µs",
      limit: 1.5,
      atMost: true,
    }),
    check({
      id: "3b",
      what: "messageHistory p99 vs { __typename } p99",
      value: read.history.requests > 0 ? read.history.p99Ms : NaN,
      baseline: read.trivial.p99Ms,
      unit: "ms",
      limit: 2,
      atMost: true,
    }),
  ];
}

/** Target 4: more consumers never cost throughput. */
function scalingTargets(scaling: PipelineResult[] | undefined): TargetCheck[] {
  const one = scaling?.find((s) => s.consumers === 1);
  if (!one) return [];
  return scaling!
    .filter((s) => s !== one)
    .map((s) =>
      check(
        {
          id: "4",
          what: `${s.consumers} consumers vs 1: orders per second`,
          value: s.ordersPerSecond,
          baseline: one.ordersPerSecond,
          unit: "orders/s",
          limit: 0.95,
          atMost: false,
        },
        unverified(s, one),
      ),
    );
}

export function targetChecks(r: TargetInputs): TargetCheck[] {
  // The raw baseline measured next to the happy path, when there is one.
  const rawForHappy = r.rawAgain ?? r.raw;
  const out = [...cpuTargets(r, rawForHappy), ...readTargets(r.read), ...scalingTargets(r.scaling)];
  if (r.happy && rawForHappy)
    out.push(
      check(
        {
          id: "5",
          what: "e2e happy path vs raw publish+consume: orders per second",
          value: r.happy.ordersPerSecond,
          baseline: rawForHappy.publishConsumePerSecond,
          unit: "msg/s",
          limit: 0.5,
          atMost: false,
        },
        unverified(r.happy),
      ),
    );
  return out;
}
