// The fault suite's invariant over attempt histories: each kind of damage to a history is
// counted as lost or duplicated and named, so a scenario cannot pass with it.
import { describe, expect, it } from "vitest";

import { checkHistories, type LogRow, type SourceOrder } from "./faults/support/invariant.ts";

const MAX = 5;
const order = (id: number, check: boolean): [string, SourceOrder] => [
  `m${id}`,
  { key: `SYSTEM1:${id}`, system: "SYSTEM1", id, check },
];
const row = (id: number, attempt: number, status: string, round = 0): LogRow => ({
  messageId: `m${id}`,
  round,
  attempt,
  status,
  system: "SYSTEM1",
  orderId: id,
});
const retries = (id: number, n: number) => Array.from({ length: n }, (_, i) => row(id, i + 1, "RETRY_SCHEDULED"));
const orders = new Map([order(1, true), order(2, false)]);
const complete = [...retries(1, 2), row(1, 3, "SUCCEEDED"), ...retries(2, 4), row(2, 5, "DEAD_LETTERED")];

function judge(docs: LogRow[], expectedRejected = 0) {
  const problems: string[] = [];
  return { ...checkHistories(docs, orders, expectedRejected, MAX, problems), problems };
}

describe("the fault suite's attempt-history invariant", () => {
  it("accepts complete histories, in any order, with later rounds beside them", () => {
    expect(judge([...complete].reverse().concat(row(2, 1, "SUCCEEDED", 1)))).toEqual({
      missingEntries: 0,
      repeatedCount: 0,
      problems: [],
    });
  });

  it("counts a missing middle attempt as lost and names the gap", () => {
    const r = judge(complete.filter((d) => !(d.messageId === "m1" && d.attempt === 2)));
    expect(r.missingEntries).toBe(1);
    expect(r.problems.join("\n")).toMatch(/with a gap: 1 \(e\.g\. SYSTEM1:1 \[1,3\]\)/);
  });

  it("counts a missing terminal entry and an order with no history as lost", () => {
    const r = judge(
      complete.filter((d) => !(d.messageId === "m2" && d.status === "DEAD_LETTERED")).filter((d) => d.messageId !== "m1"),
    );
    expect(r.missingEntries).toBe(2);
    expect(r.problems.join("\n")).toMatch(/without any logged attempt: 1/);
    expect(r.problems.join("\n")).toMatch(/wrong ending or order: 1 \(e\.g\. SYSTEM1:2 /);
  });

  it("counts a repeated attempt as duplicated", () => {
    const r = judge([...complete, row(1, 3, "SUCCEEDED")]);
    expect(r.repeatedCount).toBe(1);
    expect(r.problems.join("\n")).toMatch(
      /repeated \(messageId, round, attempt\) log documents: 1 \(e\.g\. SYSTEM1:1 attempt 3: SUCCEEDED\+SUCCEEDED\)/,
    );
  });

  it("refuses a false order that ended before MAX_ATTEMPTS, unknown messages and an unexpected REJECTED count", () => {
    const early = complete.filter((d) => !(d.messageId === "m2" && d.attempt >= 4)).concat(row(2, 4, "DEAD_LETTERED"));
    const r = judge([...early, row(9, 1, "SUCCEEDED"), { ...row(0, 1, "REJECTED"), messageId: "bad" }]);
    expect(r.problems).toEqual([
      "REJECTED log documents: 1, expected 0",
      expect.stringMatching(/wrong ending or order: 1 \(e\.g\. SYSTEM1:2 1:RETRY_SCHEDULED .* 4:DEAD_LETTERED\)/),
      "log documents for unknown messages: 1 (e.g. m9 (1 docs))",
    ]);
    expect(judge([{ ...row(0, 1, "REJECTED"), messageId: "bad" }, ...complete], 1).problems).toEqual([]);
  });
});
