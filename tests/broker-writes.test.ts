// How the broker connections hand their frames to the socket, against the real broker: a burst
// of publishes leaves in a few writes, not one per message, and arrives whole.
import { randomUUID } from "node:crypto";
import type { Socket } from "node:net";

import type { ChannelModel, ConfirmChannel } from "amqplib";
import { afterEach, beforeEach, describe, expect, it } from "vitest";

import { createNodeDialer } from "../common/broker-nodes.ts";
import { readConfig } from "../common/config.ts";

let conn: ChannelModel;
let ch: ConfirmChannel;
let queue: string;

beforeEach(async () => {
  conn = await createNodeDialer([readConfig().broker.url], "test-writes").connect("");
  ch = await conn.createConfirmChannel();
  queue = `test-writes-${randomUUID().slice(0, 8)}`;
  await ch.assertQueue(queue, { durable: false, exclusive: true });
});

afterEach(async () => {
  await conn.close();
});

/** Counts the socket writes (one system call each) made while `fn` runs. */
async function countWrites(fn: () => Promise<void>): Promise<number> {
  const socket = (conn as unknown as { connection: { stream: Socket } }).connection.stream;
  const internals = socket as unknown as Record<"_write" | "_writev", (...args: unknown[]) => unknown>;
  const originals = { _write: internals._write, _writev: internals._writev };
  let writes = 0;
  for (const name of ["_write", "_writev"] as const) {
    internals[name] = function (this: Socket, ...args: unknown[]) {
      writes++;
      return originals[name].apply(this, args);
    };
  }
  try {
    await fn();
  } finally {
    Object.assign(internals, originals);
  }
  return writes;
}

async function publishBurst(count: number, bytes: number) {
  const body = Buffer.alloc(bytes, "x");
  return countWrites(async () => {
    for (let i = 0; i < count; i++) ch.sendToQueue(queue, body, { messageId: String(i) });
    await ch.waitForConfirms();
  });
}

describe("broker connections", () => {
  it("send a burst of publishes in a few socket writes, not one per message", async () => {
    const writes = await publishBurst(200, 200);
    // 200 frames of ~300 bytes: a few passes of the multiplexer, each ended by the socket's
    // high-water mark at worst; one write per message without the coalescing.
    expect(writes).toBeLessThanOrEqual(20);
    expect((await ch.checkQueue(queue)).messageCount).toBe(200);
  });

  it("keep the socket's backpressure: a burst far past its buffer arrives whole and in order", async () => {
    const writes = await publishBurst(2_000, 4_000);
    expect(writes).toBeLessThan(2_000 / 4);
    expect((await ch.checkQueue(queue)).messageCount).toBe(2_000);
    const ids: string[] = [];
    for (let i = 0; i < 2_000; i++) {
      const m = await ch.get(queue, { noAck: true });
      if (!m) break;
      ids.push(m.properties.messageId as string);
    }
    expect(ids).toEqual(Array.from({ length: 2_000 }, (_, i) => String(i)));
  });
});
