// The AMQP transaction methods against the real broker: what a channel in tx mode
// publishes or acks takes effect at Tx.Commit and never after Tx.Rollback.
import { randomUUID } from "node:crypto";

import amqp, { type Channel, type ChannelModel } from "amqplib";
import { afterEach, beforeEach, describe, expect, it } from "vitest";

import { txCommit, txRollback, txSelect } from "../common/amqp-tx.ts";
import { readConfig } from "../common/config.ts";

let conn: ChannelModel;
let queue: string;

beforeEach(async () => {
  conn = await amqp.connect(readConfig().broker.url);
  queue = `test-tx-${randomUUID().slice(0, 8)}`;
  await withChannel((ch) => ch.assertQueue(queue, { durable: false }));
});

afterEach(async () => {
  await withChannel((ch) => ch.deleteQueue(queue));
  await conn.close();
});

async function withChannel<T>(fn: (ch: Channel) => Promise<T>): Promise<T> {
  const ch = await conn.createChannel();
  try {
    return await fn(ch);
  } finally {
    await ch.close();
  }
}

/** Ready messages, asked on a channel of its own (not in tx mode). */
const depth = () => withChannel(async (ch) => (await ch.checkQueue(queue)).messageCount);

describe("AMQP transactions (Tx.Select, Tx.Commit, Tx.Rollback)", () => {
  it("a rolled-back publish never reaches the queue; a committed one does", async () => {
    await withChannel(async (ch) => {
      await txSelect(ch);
      ch.sendToQueue(queue, Buffer.from("rolled back"));
      await txRollback(ch);
      expect(await depth()).toBe(0);

      ch.sendToQueue(queue, Buffer.from("committed"));
      // Pending until the commit.
      expect(await depth()).toBe(0);
      await txCommit(ch);
    });
    expect(await depth()).toBe(1);
    const got = await withChannel((ch) => ch.get(queue, { noAck: true }));
    expect(got && got.content.toString()).toBe("committed");
  });

  it("a rolled-back ack leaves the delivery unacked; a committed one removes it", async () => {
    await withChannel(async (ch) => void ch.sendToQueue(queue, Buffer.from("order")));
    expect(await depth()).toBe(1);

    // Ack then roll back: once the channel closes, the broker requeues the delivery.
    await withChannel(async (ch) => {
      await txSelect(ch);
      const m = await ch.get(queue, { noAck: false });
      expect(m && m.content.toString()).toBe("order");
      ch.ack(m as amqp.GetMessage);
      await txRollback(ch);
    });
    expect(await depth()).toBe(1);

    // Ack then commit: the delivery is gone for good.
    await withChannel(async (ch) => {
      await txSelect(ch);
      const m = await ch.get(queue, { noAck: false });
      expect(m && m.fields.redelivered).toBe(true);
      ch.ack(m as amqp.GetMessage);
      await txCommit(ch);
    });
    expect(await depth()).toBe(0);
  });
});
