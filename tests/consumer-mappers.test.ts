// The consumer's pure mappers: what an attempt writes to the attempt log, announces as an event
// and adds to a dead-letter group, for each kind of outcome.
import { randomUUID } from "node:crypto";

import type { ConsumeMessage } from "amqplib";
import { describe, expect, it } from "vitest";

import { readConfigWith } from "../common/config.ts";
import { encodeMessage, HEADERS, type OrderMessage } from "../common/contract.ts";
import { decide, deliveryOf, type Outcome } from "../consumer/src/decide.ts";
import { deadLetterOf, messageIdOf, toEvent, toLogDocument, unreadableMessageId } from "../consumer/src/mappers.ts";

const config = readConfigWith({ REDIS_PREFIX: "test-mappers" });
const now = new Date("2026-01-02T03:04:05.000Z");
const expires = new Date("2026-01-09T03:04:05.000Z");
const ctx = { maxAttempts: 5, consumerId: "consumer-a", expiryFrom: () => expires };
const opts = { maxAttempts: 5, maxMessageBytes: 65536 };

const order: OrderMessage = {
  messageId: randomUUID(),
  source: { system: "SYSTEM2", orderId: 42 },
  order: { product: "Lamp", price: "9.99", securityCheck: true },
  requiredAttempts: 3,
  publishedAt: "2026-01-01T00:00:00.000Z",
};

/** A delivery as amqplib hands it over. */
function delivery(content: Buffer, headers: Record<string, unknown>, messageId?: string): ConsumeMessage {
  return { content, fields: { redelivered: false }, properties: { headers, messageId } } as unknown as ConsumeMessage;
}

function attempt(n: number, maxAttempts = 5) {
  const msg = delivery(encodeMessage(order), { [HEADERS.attempt]: n, [HEADERS.round]: 1 });
  const outcome = decide(msg.content, msg.properties.headers, { ...opts, maxAttempts });
  return { msg, outcome, copy: "copy-1", messageId: order.messageId };
}

describe("consumer mappers", () => {
  it("logs a success with the delivery's fields, expiring, and announces it without an error", () => {
    const a = attempt(3);
    expect(a.outcome.kind).toBe("SUCCEEDED");
    expect(toLogDocument(a, now, ctx)).toMatchObject({
      messageId: order.messageId,
      status: "SUCCEEDED",
      round: 1,
      attempt: 3,
      requiredAttempts: 3,
      system: "SYSTEM2",
      orderId: 42,
      publishedAt: new Date(order.publishedAt),
      order: order.order,
      maxAttempts: 5,
      processedAt: now,
      expiresAt: expires,
      retained: false,
      consumerId: "consumer-a",
      copyId: "copy-1",
      error: null,
    });
    // Every field costs each log write (on FerretDB most of all): none is stored twice.
    expect(Object.keys(toLogDocument(a, now, ctx))).not.toContain("source");
    expect(toEvent(a, now)).toEqual({
      messageId: order.messageId,
      system: "SYSTEM2",
      orderId: 42,
      attempt: 3,
      round: 1,
      status: "SUCCEEDED",
      at: now.toISOString(),
    });
    expect(deadLetterOf(config, a, now)).toBeUndefined();
  });

  it("keeps a dead letter's entry for good and groups it by system and reason", () => {
    const a = attempt(2, 2);
    expect(a.outcome.kind).toBe("DEAD_LETTERED");
    const doc = toLogDocument(a, now, ctx);
    expect(doc).toMatchObject({ status: "DEAD_LETTERED", expiresAt: null, retained: true });
    expect(doc.error).toMatch(/giving up after 2 of 2 attempts/);
    expect(deadLetterOf(config, a, now)).toEqual({
      groupKey: "test-mappers:dead-letters:SYSTEM2:max-attempts",
      group: "SYSTEM2:max-attempts",
      messageId: order.messageId,
      deadAt: now,
    });
  });

  it("logs an unreadable message under no system, with the attempt its header names", () => {
    const msg = delivery(Buffer.from("not json"), { [HEADERS.attempt]: 4 }, "id-from-property");
    const outcome: Outcome = decide(msg.content, msg.properties.headers, opts);
    const a = { msg, outcome, copy: "copy-2", messageId: messageIdOf(msg, outcome, "copy-2") };
    expect(a.messageId).toBe("id-from-property");
    expect(toLogDocument(a, now, ctx)).toMatchObject({
      status: "REJECTED",
      round: 0,
      attempt: 4,
      system: null,
      orderId: null,
      publishedAt: null,
      order: null,
      expiresAt: null,
      retained: true,
    });
    // A rejection groups under UNKNOWN, readable or not: a DLQ walk cannot tell them apart.
    expect(deadLetterOf(config, a, now)?.group).toBe("UNKNOWN:rejected:not-json");
  });

  it("cuts an event's error short and leaves the whole of it to the log", () => {
    const a = attempt(1);
    const long: Outcome = {
      kind: "RETRY_SCHEDULED",
      delivery: deliveryOf(a.outcome)!,
      error: "x".repeat(2000),
    };
    expect(toEvent({ ...a, outcome: long }, now).error).toHaveLength(500);
    expect(toLogDocument({ ...a, outcome: long }, now, ctx).error).toHaveLength(2000);
  });

  it("derives one id per unreadable copy when the message id property cannot be stored", () => {
    const content = Buffer.from("\u0000garbage");
    const msg = delivery(content, {}, "bad\u0000id");
    const outcome = decide(content, {}, opts);
    const id = messageIdOf(msg, outcome, "copy-3");
    expect(id).toBe(unreadableMessageId(content, "copy-3"));
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(messageIdOf(msg, outcome, "copy-3")).toBe(id);
    expect(messageIdOf(msg, outcome, "copy-4")).not.toBe(id);
  });
});
