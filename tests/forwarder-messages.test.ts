// What the forwarder publishes for a failed attempt: a retry copy to its wait queue, or a dead
// letter carrying its reason, each a new copy.
import { randomUUID } from "node:crypto";

import type { ConsumeMessage } from "amqplib";
import { describe, expect, it } from "vitest";

import { readConfigWith } from "../common/config.ts";
import { HEADERS, type OrderMessage } from "../common/contract.ts";
import { makeTopology } from "../common/topology.ts";
import { decide } from "../consumer/src/decide.ts";
import { type ForwardItem, toMessage } from "../consumer/src/forwarder.ts";

const config = readConfigWith({ AMQP_PREFIX: "test-forward", CONSUMER_ID: "consumer-f", MAX_ATTEMPTS: "3" });
const topology = makeTopology(config);
const order: OrderMessage = {
  messageId: randomUUID(),
  source: { system: "SYSTEM1", orderId: 9 },
  order: { product: "Lamp", price: "9.99", securityCheck: false },
  requiredAttempts: 9,
  publishedAt: new Date().toISOString(),
};

function failed(attempt: number, body = Buffer.from(JSON.stringify(order))): ForwardItem {
  const headers = { [HEADERS.attempt]: attempt, [HEADERS.copyId]: "old-copy", "x-death": [{ count: 1 }] };
  const msg = { content: body, fields: {}, properties: { headers, timestamp: 1700000000 } } as unknown as ConsumeMessage;
  const outcome = decide(body, headers, { maxAttempts: 3, maxMessageBytes: 65536 });
  if (outcome.kind === "SUCCEEDED") throw new Error("expected a failed attempt");
  return { msg, outcome, copy: "old-copy", messageId: order.messageId, deadAt: new Date("2026-01-01T00:00:00Z") };
}

describe("forwarded messages", () => {
  it("sends a retry copy to the wait queue of its attempt, as the next attempt and a new copy", () => {
    const { queue, content, options } = toMessage(config, topology, failed(2));
    expect(queue).toBe(topology.waitQueueFor(2));
    expect(content.toString()).toBe(JSON.stringify(order));
    expect(options).toMatchObject({ persistent: true, messageId: order.messageId, timestamp: 1700000000 });
    expect(options.headers?.[HEADERS.attempt]).toBe(3);
    expect(options.headers?.[HEADERS.copyId]).not.toBe("old-copy");
    expect(options.headers).not.toHaveProperty("x-death");
    expect(options.headers).not.toHaveProperty(HEADERS.deadReason);
  });

  it("sends a dead letter to the DLQ with a short reason, its attempts, when and by whom", () => {
    const dead = toMessage(config, topology, failed(3));
    expect(dead.queue).toBe(topology.dlq);
    expect(dead.options.headers).toMatchObject({
      [HEADERS.deadReason]: "max-attempts",
      [HEADERS.deadAttempts]: 3,
      [HEADERS.deadAt]: "2026-01-01T00:00:00.000Z",
      [HEADERS.consumerId]: "consumer-f",
    });
    const rejected = toMessage(config, topology, failed(1, Buffer.from("not json")));
    expect(rejected.queue).toBe(topology.dlq);
    expect(rejected.options.headers?.[HEADERS.deadAttempts]).toBe(0);
    expect(rejected.options.headers?.[HEADERS.deadReason]).toBe("rejected: body is not valid JSON");
  });
});
