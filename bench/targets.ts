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

export function targetChecks(r: TargetInputs): TargetCheck[] {
  const out: TargetCheck[] = [];
  // The raw baseline measured next to the happy path, when there is one.
  const rawForHappy = r.rawAgain ?? r.raw;
  const driverPerRawMessage = rawForHappy ? cpuPer(rawForHappy.cpu.publishConsume, "bench driver", rawForHappy.messages) : NaN;

  if (r.happy && rawForHappy)
    out.push(
      check({
        id: "1",
        what: "consumer CPU per happy-path attempt vs bench driver CPU per raw publish+consume message",
        value: cpuPer(r.happy.cpu, "consumer", r.happy.attempts),
        baseline: driverPerRawMessage,
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
  if (r.read) {
    out.push(
      check({
        id: "3a",
        what: "gateway CPU per messageHistory vs per { __typename }",
        value: cpuPer(r.read.cpu.history, "gateway", r.read.history.requests),
        baseline: cpuPer(r.read.cpu.trivial, "gateway", r.read.trivial.requests),
        unit: "µs",
        limit: 1.5,
        atMost: true,
      }),
      check({
        id: "3b",
        what: "messageHistory p99 vs { __typename } p99",
        value: r.read.history.requests > 0 ? r.read.history.p99Ms : NaN,
        baseline: r.read.trivial.p99Ms,
        unit: "ms",
        limit: 2,
        atMost: true,
      }),
    );
  }
  const one = r.scaling?.find((s) => s.consumers === 1);
  for (const s of r.scaling ?? [])
    if (one && s !== one)
      out.push(
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
