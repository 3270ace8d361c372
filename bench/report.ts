// What a run prints (a Markdown table, the notes on scaled-down sizes, the CPU
// lines) and the JSON it keeps in bench/results/.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

import { cpuLines } from "./cpu-report.ts";
import { ISSUE_SIZES, type Options, type Step } from "./options.ts";
import { LAUNCH, ROOT } from "./processes.ts";
import { fmt, progress } from "./progress.ts";
import type { Results, StepErrors } from "./results.ts";
import { buildRows, TARGETS } from "./rows.ts";
import { renderTable } from "./table.ts";
import { targetChecks } from "./targets.ts";

export function scaledNotes(o: Options): string[] {
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
  const { nodeArgs, env } = LAUNCH.gateway;
  const vars = Object.entries(env).map(([k, v]) => `${k}=${v} `);
  return `${vars.join("")}node ${(o.gatewayNodeArgs ?? nodeArgs).join(" ")} gateway/src/main.ts`;
}

export interface RunInfo {
  runId: string;
  options: Options;
  startedAt: Date;
  seconds: number;
  scaled: string[];
  /** µs of CPU a thread is charged per 10 ms sleep and wake, measured at the start (wakeCostUs). */
  wakeUs: number | undefined;
}

/** Prints the run's report on stdout and writes it to bench/results/<start>.json and latest.json. */
export function report(run: RunInfo, results: Results, errors: StepErrors): void {
  const { options, startedAt, seconds, scaled, wakeUs } = run;
  const targets = targetChecks(results);
  const rows = buildRows(results, options, errors, targets);
  const cpu = cpuLines(results);
  const out = [
    "",
    `tentativa benchmark ${run.runId}${options.label ? ` (${options.label})` : ""}: ${startedAt.toISOString()}, ${fmt(seconds)} s, ` +
      `${os.availableParallelism()} cores, node ${process.version}${options.quick ? ", --quick" : ""}`,
    ...(Object.keys(options.consumerEnv).length ? [`consumer settings: ${JSON.stringify(options.consumerEnv)}`] : []),
    ...(Object.keys(options.gatewayEnv).length ? [`gateway settings: ${JSON.stringify(options.gatewayEnv)}`] : []),
    `gateway launched as: ${launchLine(options)}`,
    ...(wakeUs === undefined
      ? []
      : [`a thread's sleep and wake costs it ${fmt(wakeUs)} µs of CPU here (10 ms timer sleeps, at the start)`]),
    "",
    renderTable(rows),
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
      runId: run.runId,
      label: options.label ?? null,
      startedAt: startedAt.toISOString(),
      seconds,
      machine: { cores: os.availableParallelism(), node: process.version, loadavg: os.loadavg(), wakeUs: wakeUs ?? null },
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
}
