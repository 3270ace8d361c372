// What the gateway writes for a dead letter it redrives or discards: the log entries it maps a
// dead letter to. The event and counter they send are common/events.ts's (tests/events.test.ts).
import { describe, expect, it } from "vitest";

import { discardedEntry, redrivenEntry } from "../gateway/src/services/dead-letter-records.ts";
import type { DeadLetter } from "../gateway/src/services/dead-letter-walk.ts";

const letter = (over: Partial<DeadLetter> = {}): DeadLetter => ({
  messageId: "m-1",
  system: "SYSTEM1",
  orderId: 7,
  reason: "endput refused the row",
  group: "endput refused the row",
  attempts: 3,
  round: 2,
  deadAt: null,
  ...over,
});

describe("dead-letter log entries", () => {
  const now = new Date("2026-01-02T03:04:05Z");
  const at = { now, expiresAt: new Date("2026-01-09T03:04:05Z"), maxAttempts: 5 };

  it("opens the next round with a REDRIVEN entry that carries the trace and why the round before ended", () => {
    const doc = redrivenEntry(letter(), 3, at, "trace-1");
    expect(doc).toMatchObject({ messageId: "m-1", round: 3, attempt: 0, status: "REDRIVEN", system: "SYSTEM1", orderId: 7 });
    expect(doc.error).toBe("redriven after 3 attempts (endput refused the row)");
    expect(doc.traceId).toBe("trace-1");
    expect(doc.expiresAt).toEqual(at.expiresAt);
    expect("traceId" in redrivenEntry(letter(), 3, at)).toBe(false);
  });

  it("closes a rejected message's round under no system, as the consumer counted it", () => {
    const doc = discardedEntry(letter({ group: "rejected:other", system: "SYSTEM2", orderId: 9 }), at);
    expect(doc).toMatchObject({ round: 2, attempt: 0, status: "DISCARDED", system: null, orderId: null });
    expect(doc.publishedAt).toBeNull();
    expect("source" in doc).toBe(false);
    expect(discardedEntry(letter(), at)).toMatchObject({ system: "SYSTEM1", orderId: 7 });
  });
});
