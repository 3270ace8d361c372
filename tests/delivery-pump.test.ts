// The delivery pump on a real RabbitMQ channel, with a handler that acks: batches run side by
// side, and their acks (multiple = true) go in delivery order whatever order they finish in.
import { randomUUID } from "node:crypto";

import type { Channel, ConsumeMessage } from "amqplib";
import { afterEach, describe, expect, it } from "vitest";

import { txCommit } from "../common/amqp-tx.ts";
import { type Broker, createBroker } from "../common/broker.ts";
import { readConfigWith } from "../common/config.ts";
import { createLogger } from "../common/logger.ts";
import { type BatchHandler, createDeliveryPump, type DeliveryPump } from "../consumer/src/delivery-pump.ts";
import { waitFor } from "./support/env.ts";

let world: { broker: Broker; pump: DeliveryPump } | undefined;
afterEach(async () => {
  if (!world) return;
  const { broker, pump } = world;
  world = undefined;
  await pump.stop();
  const topo = broker.topology;
  await broker.withChannel(async (ch) => {
    for (const q of [topo.primary, topo.dlq, ...topo.waitQueues.map((w) => w.name)]) await ch.deleteQueue(q);
    await ch.deleteExchange(topo.exchange);
  });
  await broker.close();
});

/** A pump over a queue of its own holding `count` messages ("0", "1", …), cut into batches of two. */
async function startPump(count: number, handler: BatchHandler<void>) {
  const config = readConfigWith({
    AMQP_PREFIX: `test-pump-${randomUUID().slice(0, 8)}`,
    CONSUMER_BATCH_SIZE: "2",
    // Only full batches: the test decides what is in each.
    CONSUMER_BATCH_WAIT_MS: "10000",
    CONSUMER_CONCURRENCY: "3",
    LOG_LEVEL: "silent",
  });
  const logger = createLogger(config, "test");
  const broker = createBroker({ config, logger, name: "test-pump" });
  await broker.ready();
  const { exchange, routingKey } = broker.topology;
  for (let i = 0; i < count; i++) await broker.publish(exchange, routingKey, Buffer.from(String(i)), { persistent: true });
  const pump = createDeliveryPump({ config, logger, broker, handler });
  world = { broker, pump };
  pump.start();
  return { broker, pump };
}

const names = (batch: ConsumeMessage[]) => batch.map((m) => m.content.toString()).join(",");

/** Acks the batch as the forwarder does: multiple = true up to its last delivery, in the channel's transaction. */
async function ack(ch: Channel, batch: ConsumeMessage[]) {
  ch.ack(batch.at(-1)!, true);
  await txCommit(ch);
}

async function settled(broker: Broker, pump: DeliveryPump) {
  await waitFor(
    async () => ({
      ...pump.stats(),
      depth: await broker.withChannel(async (ch) => (await ch.checkQueue(broker.topology.primary)).messageCount),
    }),
    (s) => s.inFlight === 0 && s.depth === 0 && s.processed > 0,
    10_000,
  );
}

describe("delivery pump", () => {
  it("commits batches in delivery order when a later one finishes first", async () => {
    const processed: string[] = [];
    const committed: string[] = [];
    let laterDone!: () => void;
    const later = new Promise<void>((r) => (laterDone = r));
    const { broker, pump } = await startPump(6, {
      async process(batch) {
        // The first batch finishes only after the two behind it.
        if (names(batch) === "0,1") await later;
        processed.push(names(batch));
        if (processed.length === 2) laterDone();
      },
      async commit(ch, batch) {
        committed.push(names(batch));
        await ack(ch, batch);
      },
      failed: async () => undefined,
    });
    await settled(broker, pump);
    expect(processed).toEqual(["2,3", "4,5", "0,1"]);
    expect(committed).toEqual(["0,1", "2,3", "4,5"]);
    expect(pump.stats()).toEqual({ processed: 6, batches: 3, inFlight: 0 });
  });

  it("never acks past a batch that failed: the broker redelivers both", async () => {
    const committed: { names: string; redelivered: boolean }[] = [];
    const failed: string[] = [];
    let secondDone!: () => void;
    const second = new Promise<void>((r) => (secondDone = r));
    let first = true;
    const { broker, pump } = await startPump(4, {
      async process(batch) {
        if (batch[0]!.fields.redelivered) return;
        if (names(batch) === "2,3") return secondDone();
        // The first batch fails once the second is ready to commit (an ack of "3" would take "0,1" too).
        await second;
        if (first) {
          first = false;
          throw new Error("the first batch failed");
        }
      },
      async commit(ch, batch) {
        committed.push({ names: names(batch), redelivered: batch.every((m) => m.fields.redelivered) });
        await ack(ch, batch);
      },
      async failed(batch) {
        failed.push(names(batch));
      },
    });
    await settled(broker, pump);
    expect(failed).toEqual(["0,1"]);
    // Nothing of the first delivery was acked; each message was acked once, as a redelivery.
    expect(committed).toEqual([
      { names: "0,1", redelivered: true },
      { names: "2,3", redelivered: true },
    ]);
  });
});
