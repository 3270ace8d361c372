// The result table, printed as Markdown so it can be pasted into BENCHMARKS.md.
export interface Row {
  metric: string;
  value: string;
  baseline: string;
  ratio: string;
  target: string;
  result: "PASS" | "FAIL" | "info" | "ERROR";
}

export function renderTable(rows: Row[]): string {
  const header: Row = {
    metric: "metric",
    value: "value",
    baseline: "baseline",
    ratio: "ratio",
    target: "target",
    result: "info",
  };
  const cols = ["metric", "value", "baseline", "ratio", "target", "result"] as const;
  const cell = (r: Row, c: (typeof cols)[number]) => (r === header && c === "result" ? "result" : r[c]);
  const width = cols.map((c) => Math.max(...[header, ...rows].map((r) => cell(r, c).length)));
  const line = (r: Row) =>
    `| ${cols.map((c, i) => (c === "metric" ? cell(r, c).padEnd(width[i]!) : cell(r, c).padStart(width[i]!))).join(" | ")} |`;
  const rule = `|${cols.map((c, i) => (c === "metric" ? "-".repeat(width[i]! + 2) : `${"-".repeat(width[i]! + 1)}:`)).join("|")}|`;
  return [line(header), rule, ...rows.map(line)].join("\n");
}
