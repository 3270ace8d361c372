// One row per scenario, written to disk as the scenario goes (a failing
// assertion leaves the row marked FAIL with what was measured so far); the
// global teardown gathers the rows into report.json and prints the table.
import fs from "node:fs";
import path from "node:path";

import { onTestFailed } from "vitest";

import { OUTPUT_DIR } from "./fault-services.ts";
import type { InvariantResult } from "./invariant.ts";

export const ROWS_DIR = path.join(OUTPUT_DIR, "rows");

export interface Row {
  scenario: string;
  title: string;
  orders: number;
  faults: string;
  lost: number | null;
  duplicated: number | null;
  result: "PASS" | "FAIL";
  seconds: number;
  problems: string[];
  /** Figures worth reading beside the table (volumes reduced, latency percentiles). */
  notes: string[];
  details: Record<string, unknown>;
}

export interface ScenarioReport {
  row: Row;
  set(fields: Partial<Omit<Row, "result" | "scenario" | "title">>): void;
  detail(key: string, value: unknown): void;
  note(text: string): void;
  invariant(r: InvariantResult): void;
  /** Runs a step and records how long it took (details.timings, in seconds). */
  time<T>(label: string, fn: () => Promise<T>): Promise<T>;
  /** The last line of a scenario: every assertion before it held. */
  pass(): void;
}

export function startReport(scenario: string, title: string): ScenarioReport {
  const started = Date.now();
  const row: Row = {
    scenario,
    title,
    orders: 0,
    faults: "",
    lost: null,
    duplicated: null,
    result: "FAIL",
    seconds: 0,
    problems: [],
    notes: [],
    details: {},
  };
  const save = () => {
    row.seconds = Math.round((Date.now() - started) / 100) / 10;
    fs.mkdirSync(ROWS_DIR, { recursive: true });
    fs.writeFileSync(path.join(ROWS_DIR, `${scenario}.json`), JSON.stringify(row, null, 2));
  };
  save();
  // The failing assertion's message goes into the row, so report.json says why.
  onTestFailed(({ task }) => {
    for (const e of task.result?.errors ?? []) row.problems.push(`failed: ${String(e.message).split("\n")[0]!.slice(0, 300)}`);
    save();
  });
  return {
    row,
    set(fields) {
      Object.assign(row, fields);
      save();
    },
    detail(key, value) {
      row.details[key] = value;
      save();
    },
    note(text) {
      row.notes.push(text);
      save();
    },
    invariant(r) {
      row.lost = r.lost;
      row.duplicated = r.duplicated;
      row.problems = [...row.problems, ...r.problems];
      row.details.invariant = {
        orders: r.orders,
        trueOrders: r.trueOrders,
        falseOrders: r.falseOrders,
        endputRows: r.endputRows,
        lostLogEntries: r.lostLogEntries,
        deadLetters: r.deadLetters,
        rejected: r.rejected.length,
        logDocuments: r.logDocuments,
      };
      save();
    },
    async time(label, fn) {
      const t0 = Date.now();
      try {
        return await fn();
      } finally {
        const timings = (row.details.timings ??= {}) as Record<string, number>;
        timings[label] = Math.round((Date.now() - t0) / 100) / 10;
        save();
      }
    },
    pass() {
      row.result = "PASS";
      save();
    },
  };
}

export function readRows(): Row[] {
  if (!fs.existsSync(ROWS_DIR)) return [];
  return fs
    .readdirSync(ROWS_DIR)
    .filter((f) => f.endsWith(".json"))
    .map((f) => JSON.parse(fs.readFileSync(path.join(ROWS_DIR, f), "utf8")) as Row)
    .sort((a, b) => a.scenario.localeCompare(b.scenario, undefined, { numeric: true }));
}

export function formatTable(rows: Row[]): string {
  const header = ["scenario", "orders", "faults injected", "lost", "duplicated", "result", "seconds"];
  const body = rows.map((r) => [
    `${r.scenario}. ${r.title}`,
    String(r.orders),
    r.faults,
    r.lost === null ? "-" : String(r.lost),
    r.duplicated === null ? "-" : String(r.duplicated),
    r.result,
    r.seconds.toFixed(1),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`;
  return [line(header), `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`, ...body.map(line)].join("\n");
}
