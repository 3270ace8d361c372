// The physical limit: the broker moving messages shaped like ours (same body,
// properties and headers, persistent, same queue type) with no work attached.
// Publishing keeps a window of unconfirmed messages on a confirm channel;
// consuming uses the consumer's prefetch and one multiple-ack per batch.
import { randomUUID } from "node:crypto";

import amqp, { type Channel, type ConfirmChannel, type ConsumeMessage, type Options } from "amqplib";

import type { Config } from "../common/config.ts";
import { CONTENT_TYPE, encodeMessage, HEADERS } from "../common/contract.ts";
import { type CpuSnapshot, type CpuUsage } from "./machine.ts";
import { fmt, progress } from "./progress.ts";

export interface RawResult {
  messages: number;
  messageBytes: number;
  window: number;
  prefetch: number;
  ackEvery: number;
  publishPerSecond: number;
  consumePerSecond: number;
  publishConsumePerSecond: number;
  cpu: { publish: CpuUsage; consume: CpuUsage; publishConsume: CpuUsage };
}

function sampleBody(): Buffer {
  return encodeMessage({
    messageId: randomUUID(),
    source: { system: "SYSTEM1", orderId: 123_456 },
    order: { product: "Docking station", price: "512.34", securityCheck: true },
    requiredAttempts: 1,
    publishedAt: new Date().toISOString(),
  });
}

function props(): Options.Publish {
  return {
    persistent: true,
    contentType: CONTENT_TYPE,
    messageId: randomUUID(),
    timestamp: Math.floor(Date.now() / 1000),
    type: "order",
    headers: { [HEADERS.attempt]: 1, [HEADERS.round]: 0, "x-system": "SYSTEM1" },
  };
}

/** Publishes `n` copies with at most `window` unconfirmed; resolves when all are confirmed. */
function publishAll(ch: ConfirmChannel, queue: string, body: Buffer, n: number, window: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let sent = 0;
    let confirmed = 0;
    let waitingForDrain = false;
    const pump = () => {
      while (sent < n && sent - confirmed < window) {
        sent++;
        const ok = ch.sendToQueue(queue, body, props(), (err) => {
          if (err) return reject(err);
          confirmed++;
          if (confirmed === n) resolve();
          else if (!waitingForDrain && sent - confirmed <= window / 2) pump();
        });
        if (!ok) {
          waitingForDrain = true;
          ch.once("drain", () => {
            waitingForDrain = false;
            pump();
          });
          return;
        }
      }
    };
    pump();
  });
}

/** Consumes until `n` deliveries were acked, one ack (multiple) per `ackEvery` or after 10 ms idle. */
async function consumeAll(ch: Channel, queue: string, n: number, ackEvery: number): Promise<void> {
  let got = 0;
  let pending = 0;
  let last: ConsumeMessage | undefined;
  let timer: NodeJS.Timeout | undefined;
  let finish!: () => void;
  const done = new Promise<void>((resolve) => (finish = resolve));
  const flush = () => {
    if (timer) clearTimeout(timer);
    timer = undefined;
    if (last && pending > 0) ch.ack(last, true);
    pending = 0;
    if (got >= n) finish();
  };
  const { consumerTag } = await ch.consume(queue, (msg) => {
    if (!msg) return;
    got++;
    pending++;
    last = msg;
    if (pending >= ackEvery || got >= n) flush();
    else timer ??= setTimeout(flush, 10);
  });
  await done;
  await ch.cancel(consumerTag);
}

export async function rawBroker(opts: {
  config: Config;
  n: number;
  queuePrefix: string;
  trackQueue: (q: string) => void;
  cpu: () => CpuSnapshot;
  cpuBetween: (a: CpuSnapshot, b: CpuSnapshot) => CpuUsage;
}): Promise<RawResult> {
  const { config, n } = opts;
  const window = Math.max(config.gateway.publishBatchSize * 2, 1000);
  const prefetch = config.consumer.prefetch;
  const ackEvery = config.consumer.batchSize;
  const body = sampleBody();
  const conn = await amqp.connect(config.broker.url, { noDelay: true });
  const consumeConn = await amqp.connect(config.broker.url, { noDelay: true });
  try {
    const pub = await conn.createConfirmChannel();
    const sub = await consumeConn.createChannel();
    await sub.prefetch(prefetch);
    const declare = async (name: string) => {
      opts.trackQueue(name);
      await pub.assertQueue(name, { durable: true, arguments: { "x-queue-type": config.broker.queueType } });
    };

    // 1. publish only, into a queue nobody consumes yet
    const q1 = `${opts.queuePrefix}.raw.publish`;
    await declare(q1);
    progress(
      `raw: publishing ${fmt(n)} persistent ${body.length}-byte messages (window ${window}, ${config.broker.queueType} queue)`,
    );
    let c0 = opts.cpu();
    let t0 = performance.now();
    await publishAll(pub, q1, body, n, window);
    const publishS = (performance.now() - t0) / 1000;
    let c1 = opts.cpu();
    const publishCpu = opts.cpuBetween(c0, c1);

    // 2. consume what (1) left, prefetch and multiple-acks as the consumer does
    progress(`raw: consuming them (prefetch ${prefetch}, ack multiple every ${ackEvery})`);
    c0 = opts.cpu();
    t0 = performance.now();
    await consumeAll(sub, q1, n, ackEvery);
    const consumeS = (performance.now() - t0) / 1000;
    c1 = opts.cpu();
    const consumeCpu = opts.cpuBetween(c0, c1);
    await pub.deleteQueue(q1);

    // 3. both at once: the consumer waits on an empty queue, then the publisher starts
    const q2 = `${opts.queuePrefix}.raw.both`;
    await declare(q2);
    progress(`raw: publishing and consuming ${fmt(n)} at once`);
    c0 = opts.cpu();
    t0 = performance.now();
    const consumed = consumeAll(sub, q2, n, ackEvery);
    await publishAll(pub, q2, body, n, window);
    await consumed;
    const bothS = (performance.now() - t0) / 1000;
    c1 = opts.cpu();
    const bothCpu = opts.cpuBetween(c0, c1);
    await pub.deleteQueue(q2);

    return {
      messages: n,
      messageBytes: body.length,
      window,
      prefetch,
      ackEvery,
      publishPerSecond: n / publishS,
      consumePerSecond: n / consumeS,
      publishConsumePerSecond: n / bothS,
      cpu: { publish: publishCpu, consume: consumeCpu, publishConsume: bothCpu },
    };
  } finally {
    await conn.close().catch(() => undefined);
    await consumeConn.close().catch(() => undefined);
  }
}
