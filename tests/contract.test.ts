import { describe, expect, it } from "vitest";
import { z } from "zod";

import { readConfig } from "../common/config.ts";
import {
  CONTRACT_VERSION,
  contractHeaders,
  copyIdOf,
  decodeDelivery,
  encodeMessage,
  HEADERS,
  type OrderMessage,
  requiredAttemptsFor,
  withNewCopyId,
} from "../common/contract.ts";
import { backoffs, makeTopology } from "../common/topology.ts";
import { decide } from "../consumer/src/decide.ts";
import { orderMessageId } from "../gateway/src/services/message-id.ts";

const message: OrderMessage = {
  messageId: "0b3c3a52-d0b8-4b7e-9a1e-2c4d5f607182",
  source: { system: "SYSTEM1", orderId: 7 },
  order: { product: "Keyboard", price: "12.50", securityCheck: true },
  requiredAttempts: 3,
  publishedAt: new Date().toISOString(),
};
const opts = { maxAttempts: 5, maxMessageBytes: 4096 };
const headers = (attempt: unknown) => ({ [HEADERS.attempt]: attempt });

describe("message contract", () => {
  it("round-trips a valid message", () => {
    const d = decodeDelivery(encodeMessage(message), headers(2), 4096);
    expect(d).toEqual({ message, attempt: 2, round: 0 });
  });

  it("refuses to encode what the consumer would reject", () => {
    expect(() => encodeMessage({ ...message, order: { ...message.order, price: "12.5" } })).toThrow(/price/);
    expect(() => encodeMessage({ ...message, messageId: "nope" })).toThrow(/messageId/);
  });

  it.each([
    ["not JSON", Buffer.from("{oops"), headers(1), /not valid JSON/],
    ["missing attempt header", encodeMessage(message), {}, /missing header x-attempt/],
    ["bad attempt header", encodeMessage(message), headers("two"), /x-attempt is not a valid count/],
    ["zero attempt", encodeMessage(message), headers(0), /x-attempt is not a valid count/],
    ["wrong types", Buffer.from(JSON.stringify({ ...message, requiredAttempts: "3" })), headers(1), /requiredAttempts/],
    [
      "unknown system",
      Buffer.from(JSON.stringify({ ...message, source: { system: "SYSTEM9", orderId: 1 } })),
      headers(1),
      /source.system/,
    ],
    ["too large", Buffer.alloc(5000, 32), headers(1), /exceeds the 4096-byte maximum/],
  ])("rejects %s with a reason", (_name, body, h, reason) => {
    const outcome = decide(body, h, opts);
    expect(outcome.kind).toBe("REJECTED");
    expect(outcome.kind === "REJECTED" && outcome.error).toMatch(reason);
  });
});

describe("contract evolution", () => {
  // The contract as consumers read it before it had a version: strict, every field required.
  const unversioned = z.strictObject({
    messageId: z.uuid(),
    source: z.strictObject({ system: z.enum(["SYSTEM1", "SYSTEM2"]), orderId: z.number().int().positive() }),
    order: z.strictObject({ product: z.string().min(1), price: z.string(), securityCheck: z.boolean() }),
    requiredAttempts: z.number().int().min(1),
    publishedAt: z.iso.datetime(),
  });
  const versioned = (v: unknown, attempt = 1) => ({ [HEADERS.attempt]: attempt, [HEADERS.contractVersion]: v });

  it("old to new: a message without a version is read as version 1", () => {
    const d = decodeDelivery(Buffer.from(JSON.stringify(message)), headers(1), 4096);
    expect(d).toEqual({ message, attempt: 1, round: 0 });
    expect(decide(Buffer.from(JSON.stringify(message)), headers(3), opts).kind).toBe("SUCCEEDED");
  });

  it("new to old: what this version sends is still read by a consumer of the unversioned contract", () => {
    const body = JSON.parse(encodeMessage(message).toString()) as unknown;
    expect(unversioned.safeParse(body).success).toBe(true);
    expect(contractHeaders()).toEqual({ [HEADERS.contractVersion]: CONTRACT_VERSION });
    expect(CONTRACT_VERSION).toBe(1);
  });

  it("reads a message from a newer publisher of the same major version, ignoring the fields it does not know", () => {
    const newer = {
      ...message,
      channel: "web",
      source: { ...message.source, region: "eu" },
      order: { ...message.order, currency: "EUR" },
    };
    const d = decodeDelivery(Buffer.from(JSON.stringify(newer)), versioned(1, 2), 4096);
    expect(d).toEqual({ message, attempt: 2, round: 0 });
    expect(decide(Buffer.from(JSON.stringify(newer)), versioned("1", 3), opts).kind).toBe("SUCCEEDED");
  });

  it.each([
    [2, /contract version 2 is not supported: this consumer reads version 1/],
    [99, /contract version 99 is not supported/],
    ["two", /header x-contract-version is not a valid version/],
    [0, /header x-contract-version is not a valid version/],
  ])("rejects contract version %o with a clear reason", (v, reason) => {
    const outcome = decide(encodeMessage(message), versioned(v), opts);
    expect(outcome.kind).toBe("REJECTED");
    expect(outcome.kind === "REJECTED" && outcome.error).toMatch(reason);
  });
});

describe("copy ids", () => {
  it("gives every publish a new copy id and keeps the other headers", () => {
    const a = withNewCopyId({ [HEADERS.attempt]: 2 });
    const b = withNewCopyId(a);
    expect(a[HEADERS.attempt]).toBe(2);
    expect(a[HEADERS.copyId]).not.toEqual(b[HEADERS.copyId]);
    expect(copyIdOf(Buffer.from("x"), a)).toBe(a[HEADERS.copyId]);
  });

  it("tells copies without an id apart by their bytes", () => {
    const h = { [HEADERS.attempt]: 1 };
    expect(copyIdOf(Buffer.from("x"), h)).toBe(copyIdOf(Buffer.from("x"), { ...h }));
    expect(copyIdOf(Buffer.from("x"), h)).not.toBe(copyIdOf(Buffer.from("y"), h));
    expect(copyIdOf(Buffer.from("x"), h)).not.toBe(copyIdOf(Buffer.from("x"), { [HEADERS.attempt]: 2 }));
  });
});

describe("processing rule", () => {
  const body = encodeMessage(message);
  it("fails before the required attempt, succeeds at it", () => {
    expect(decide(body, headers(1), opts).kind).toBe("RETRY_SCHEDULED");
    expect(decide(body, headers(2), opts).kind).toBe("RETRY_SCHEDULED");
    expect(decide(body, headers(3), opts).kind).toBe("SUCCEEDED");
  });

  it("dead-letters a failure at the last allowed attempt", () => {
    const never = encodeMessage({ ...message, requiredAttempts: 6 });
    expect(decide(never, headers(4), opts).kind).toBe("RETRY_SCHEDULED");
    const last = decide(never, headers(5), opts);
    expect(last.kind).toBe("DEAD_LETTERED");
    expect(last.kind === "DEAD_LETTERED" && last.reason).toBe("max-attempts");
  });

  it("gives true orders 1..max attempts and false orders one more than allowed", () => {
    const seen = new Set<number>();
    for (let i = 0; i < 500; i++) seen.add(requiredAttemptsFor(true, 5));
    expect([...seen].sort()).toEqual([1, 2, 3, 4, 5]);
    expect(requiredAttemptsFor(false, 5)).toBe(6);
    expect(requiredAttemptsFor(true, 5, () => 0)).toBe(1);
    expect(requiredAttemptsFor(true, 5, () => 0.9999)).toBe(5);
  });
});

describe("backoff and topology", () => {
  it("fixed backoff always waits the base delay", () => {
    expect([1, 2, 3, 4].map((a) => backoffs.fixed(a, 1000, 60_000))).toEqual([1000, 1000, 1000, 1000]);
  });

  it("exponential backoff doubles up to the cap", () => {
    expect([1, 2, 3, 4, 5].map((a) => backoffs.exponential(a, 1000, 5000))).toEqual([1000, 2000, 4000, 5000, 5000]);
  });

  it("declares one wait queue per distinct delay", () => {
    const fixed = makeTopology(readConfig({ RETRY_DELAY_MS: "10000", MAX_ATTEMPTS: "5" }));
    expect(fixed.waitQueues).toEqual([{ name: "tentativa.orders.retry.10000ms", delayMs: 10000 }]);
    const exp = makeTopology(readConfig({ RETRY_DELAY_MS: "100", MAX_ATTEMPTS: "5", RETRY_BACKOFF: "exponential" }));
    expect(exp.waitQueues.map((w) => w.delayMs)).toEqual([100, 200, 400, 800]);
    expect(exp.waitQueueFor(3)).toBe("tentativa.orders.retry.400ms");
  });
});

describe("message ids", () => {
  it("are stable per source row and distinct across rows and systems", () => {
    expect(orderMessageId("SYSTEM1", 1)).toBe(orderMessageId("SYSTEM1", 1));
    expect(orderMessageId("SYSTEM1", 1)).not.toBe(orderMessageId("SYSTEM2", 1));
    expect(orderMessageId("SYSTEM1", 1)).not.toBe(orderMessageId("SYSTEM1", 2));
    expect(orderMessageId("SYSTEM1", 1)).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });
});
