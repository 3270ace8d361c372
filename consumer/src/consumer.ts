// The consumer: takes deliveries from the primary queue in micro-batches and, per
// batch, makes every side effect durable before acknowledging anything:
//
//   1. one attempt-log document per delivery, carrying its copy id: the first copy
//      to log an attempt owns it, durably, for as long as the log keeps the entry
//      (and, beside it, endput rows for successes: idempotent, unique on system +
//      source order id, the same row whichever copy writes it)
//   2. the owned attempts' counters and events in Redis, each at most once
//   3. in delivery order, the batch's retry copies and dead letters, each confirmed
//      by the broker, and only then its ack (multiple = true): see forwarder.ts
//
// Every copy in a batch claims before any is chosen: the owner may be a later copy
// in the batch ("forwards an attempt whose claim the second of two copies in one
// batch holds"). A crash anywhere before the ack redelivers the batch; step 1 is
// idempotent and the redelivered copy still owns its claims, so it forwards what
// the first delivery had not; what that delivery had forwarded is marked and not
// forwarded again (forwarder.ts says which windows remain), and step 2 does not
// count twice ("counts and announces an attempt once when its batch is redelivered
// after the counters"). Another copy of an attempt (a publisher's retry after a
// crash, a republished row, a redrive run twice, also after Redis lost its keys)
// finds the claim taken and is acked without being forwarded ("does not process an
// attempt again once Redis lost its keys"). A store that is down holds the batch
// (no ack, prefetch stops new deliveries) and retries with backoff until it is back.
import { createHash } from "node:crypto";

import type { Channel, ChannelModel, ConsumeMessage } from "amqplib";
import type { Redis } from "ioredis";

import type { AttemptLog, LogDocument } from "../../common/attempt-log.ts";
import { type Broker, txSelect } from "../../common/broker.ts";
import type { Config } from "../../common/config.ts";
import { copyIdOf, HEADERS, isDerivedCopyId } from "../../common/contract.ts";
import { errorMessage, sleep } from "../../common/errors.ts";
import { eventsTopic, type ProcessingEvent } from "../../common/events.ts";
import { countedKey, counterKey } from "../../common/keys.ts";
import type { Logger } from "../../common/logger.ts";
import type { EndputClient } from "../../common/stores.ts";
import { noTracing, type Tracing } from "../../common/tracing.ts";
import { decide, type Outcome } from "./decide.ts";
import { createForwarder, type ForwardItem } from "./forwarder.ts";
import type { ConsumerMetrics } from "./metrics.ts";
import { countOnce, deliveryLogFields, insertEndputRows } from "./records.ts";

export interface Consumer {
  start(): void;
  /** Stops taking messages, finishes and acks what it holds, then resolves. */
  stop(): Promise<void>;
  ready(): boolean;
  /** inFlight: delivered to this consumer and not yet acked. */
  stats(): { processed: number; batches: number; inFlight: number };
}

interface Item {
  msg: ConsumeMessage;
  outcome: Outcome;
  /** The physical copy this delivery is (kept across redeliveries). */
  copy: string;
  messageId: string;
  duplicate: boolean;
  receivedAt: number;
}

class ChannelGone extends Error {}

export function createConsumer(deps: {
  config: Config;
  logger: Logger;
  broker: Broker;
  endput: EndputClient;
  log: AttemptLog;
  redis: Redis;
  metrics?: ConsumerMetrics;
  tracing?: Tracing;
}): Consumer {
  const { config, logger, broker, endput, log, redis, metrics, tracing = noTracing } = deps;
  const topology = broker.topology;
  const consumerId = config.consumer.id;
  const topic = eventsTopic(config);
  const forwarder = createForwarder({ config, broker, redis, logger, tracing });

  let channel: Channel | undefined;
  let consumerTag: string | undefined;
  let buffer: ConsumeMessage[] = [];
  let pumping: Promise<void> | undefined;
  let timer: NodeJS.Timeout | undefined;
  let flushDue = false;
  let wake: (() => void) | undefined;
  const running = new Set<Promise<void>>();
  const ackChain = new WeakMap<Channel, Promise<boolean>>();
  const condemned = new WeakSet<Channel>();
  let stopping = false;
  let processed = 0;
  let batches = 0;
  let unacked = 0;

  async function setup(conn: ChannelModel): Promise<void> {
    if (stopping) return;
    const ch = await conn.createChannel();
    await txSelect(ch);
    ch.on("error", (err: Error) => logger.warn({ err: errorMessage(err) }, "rabbitmq consume channel error"));
    ch.on("close", () => {
      if (channel !== ch) return;
      channel = undefined;
      consumerTag = undefined;
      // Unacked deliveries of this channel go back to the queue; drop our copies.
      buffer = [];
      unacked = 0;
      // A channel-level error leaves the connection up: consume again on a new channel.
      if (!stopping && broker.isConnected()) {
        setTimeout(() => {
          if (!stopping && !channel && broker.isConnected()) {
            setup(conn).catch((err) => logger.error({ err: errorMessage(err) }, "could not resume consuming"));
          }
        }, 100);
      }
    });
    await ch.prefetch(config.consumer.prefetch);
    channel = ch;
    const { consumerTag: tag } = await ch.consume(topology.primary, (msg) => msg && onMessage(ch, msg), { noAck: false });
    consumerTag = tag;
    logger.info({ queue: topology.primary, prefetch: config.consumer.prefetch, consumerId }, "consuming");
  }

  function onMessage(ch: Channel, msg: ConsumeMessage): void {
    if (ch !== channel) return;
    unacked++;
    buffer.push(msg);
    if (buffer.length >= config.consumer.batchSize) kick();
    else if (!timer) timer = setTimeout(() => ((flushDue = true), kick()), config.consumer.batchWaitMs);
  }

  function kick(): void {
    if (buffer.length >= config.consumer.batchSize || flushDue) {
      if (timer) clearTimeout(timer);
      timer = undefined;
    }
    wake?.();
    if (!pumping) pumping = pump().finally(() => (pumping = undefined));
  }

  /**
   * Runs up to `concurrency` batches at once so that one batch's database writes
   * overlap another's broker and log writes. Acks stay in delivery order: a batch
   * acks (multiple = true) only after the batch before it was acked.
   */
  async function pump(): Promise<void> {
    while ((buffer.length > 0 && channel) || running.size > 0) {
      const ready = buffer.length >= config.consumer.batchSize || ((flushDue || stopping) && buffer.length > 0);
      if (ready && channel && running.size < config.consumer.concurrency) {
        flushDue = false;
        const ch = channel;
        const batch = buffer.splice(0, config.consumer.batchSize);
        const previous = ackChain.get(ch) ?? Promise.resolve(true);
        let settle!: (acked: boolean) => void;
        ackChain.set(ch, new Promise<boolean>((r) => (settle = r)));
        const run: Promise<void> = tracing
          .consumeBatch(batch, () => runBatch(ch, batch, previous))
          .then(settle, () => settle(false))
          .finally(() => running.delete(run));
        running.add(run);
        continue;
      }
      // A partial batch left behind still goes out after the batch wait.
      if (buffer.length > 0 && !timer && !ready)
        timer = setTimeout(() => ((flushDue = true), kick()), config.consumer.batchWaitMs);
      // Wait for a batch to finish or for more deliveries.
      await Promise.race([...running, new Promise<void>((r) => (wake = r))]);
      wake = undefined;
    }
  }

  /** Processes a batch and commits its forwards and ack after its predecessor; resolves whether it was acked. */
  async function runBatch(ch: Channel, batch: ConsumeMessage[], previous: Promise<boolean>): Promise<boolean> {
    try {
      const { forwards, finish } = await processBatch(ch, batch);
      // Acking with multiple = true would also ack an earlier batch that failed: never do that.
      if (!(await previous)) throw new ChannelGone();
      assertAlive(ch);
      try {
        await forwarder.commit(ch, forwards, batch[batch.length - 1]!, () => ch === channel && !condemned.has(ch));
      } catch (err) {
        // The ack did not go with the channel: the broker redelivers the batch.
        logger.warn({ err: errorMessage(err) }, "commit failed");
        throw new ChannelGone();
      }
      unacked -= batch.length;
      finish();
      tracing.endAttempts(batch);
      return true;
    } catch (err) {
      tracing.endAttempts(batch, err);
      if (err instanceof ChannelGone) {
        logger.warn({ dropped: batch.length }, "channel closed mid-batch; the broker redelivers it");
        return false;
      }
      // Unexpected: leave the batch uncommitted on a channel we close, so it is redelivered.
      condemned.add(ch);
      logger.error({ err: errorMessage(err), stack: (err as Error).stack }, "batch failed; closing the channel for redelivery");
      await ch.close().catch(() => undefined);
      return false;
    }
  }

  function assertAlive(ch: Channel): void {
    if (ch !== channel || condemned.has(ch)) throw new ChannelGone();
  }

  /** Runs a step until it succeeds; gives up only when the channel the batch came on is gone. */
  async function durably<T>(ch: Channel, step: string, fn: () => Promise<T>): Promise<T> {
    let delay = 100;
    for (let tries = 1; ; tries++) {
      assertAlive(ch);
      try {
        return await fn();
      } catch (err) {
        assertAlive(ch);
        logger.warn({ step, tries, retryInMs: delay, err: errorMessage(err) }, "store write failed; holding the batch");
        metrics?.storeErrors.inc({ step });
        await sleep(delay);
        delay = Math.min(delay * 2, 5000);
      }
    }
  }

  function classify(batch: ConsumeMessage[]): Item[] {
    return batch.map((msg) => {
      const outcome = decide(msg.content, msg.properties.headers, {
        maxAttempts: config.retry.maxAttempts,
        maxMessageBytes: config.consumer.maxMessageBytes,
      });
      const d = outcome.kind === "REJECTED" ? undefined : outcome.delivery;
      const copy = copyIdOf(msg.content, msg.properties.headers);
      const propId = typeof msg.properties.messageId === "string" ? msg.properties.messageId : undefined;
      return {
        msg,
        outcome,
        duplicate: false,
        copy,
        messageId: d?.message.messageId ?? propId ?? unreadableMessageId(msg.content, copy),
        receivedAt: Date.now(),
      };
    });
  }

  /** Makes the batch's side effects durable; returns what to forward with the ack, and what to record after. */
  async function processBatch(ch: Channel, batch: ConsumeMessage[]): Promise<{ forwards: ForwardItem[]; finish: () => void }> {
    const started = performance.now();
    // processedAt is when the attempt began, so the gap between attempts is never shorter than the retry delay.
    const now = new Date();
    const items = classify(batch);
    const docs = items.map((i) => toLogDocument(i, now, (performance.now() - started) / items.length));
    tracing.startAttempts(batch, docs);

    // Every copy claims (logs) its attempt; the endput insert does not wait for the
    // claims: it is idempotent, and any copy of a success writes the same row.
    const successes = items.filter((i) => i.outcome.kind === "SUCCEEDED");
    const [owners] = await Promise.all([
      durably(ch, "mongo", () => log.claim(docs)),
      successes.length > 0
        ? durably(ch, "endput", () =>
            tracing.endputWrite(
              successes.map((i) => i.msg),
              () =>
                insertEndputRows(
                  endput,
                  successes.map(({ outcome }) => (outcome as Extract<Outcome, { kind: "SUCCEEDED" }>).delivery),
                ),
            ),
          )
        : undefined,
    ]);

    // Then choose: the copy that owns an attempt acts on it, once per batch; any other copy is a duplicate.
    // An attempt logged without a copy id (before copies were recorded) goes to its first copy here.
    const acting = new Set<string>();
    items.forEach((item, idx) => {
      const doc = docs[idx]!;
      const attempt = `${doc.messageId}:${doc.round}:${doc.attempt}:${doc.status}`;
      const owner = owners[idx];
      // Two deliveries in one batch are two messages. Sharing a copy id of their own, they are a
      // broker's duplicate, acted on once; sharing one derived from identical content, they are two
      // publishes, and each is acted on ("dead-letters every one of identical unreadable messages").
      const oncePerBatch = owner === null || !isDerivedCopyId(item.copy);
      item.duplicate = (owner !== null && owner !== item.copy) || (oncePerBatch && acting.has(attempt));
      if (!item.duplicate) acting.add(attempt);
    });
    const live = items.filter((i) => !i.duplicate);
    const forwards = live.filter((i): i is Item & ForwardItem => i.outcome.kind !== "SUCCEEDED");

    const dead = live.filter((i) => i.outcome.kind === "DEAD_LETTERED").map((i) => i.messageId);
    if (dead.length > 0) await durably(ch, "mongo", () => log.retain(dead));

    if (live.length > 0) {
      const attempts = live.map((i) => {
        const doc = docs[items.indexOf(i)]!;
        return {
          key: countedKey(config, doc.messageId, doc.round, doc.attempt, doc.status),
          field: `${systemOf(i)}:${i.outcome.kind}`,
          event: JSON.stringify(toEvent(i, now)),
        };
      });
      await durably(ch, "redis", () => countOnce(redis, counterKey(config), topic, attempts));
    }

    return {
      forwards,
      finish: () => {
        processed += batch.length;
        batches++;
        record(items, live, started);
      },
    };
  }

  function systemOf(i: Item): string {
    return i.outcome.kind === "REJECTED" ? "UNKNOWN" : i.outcome.delivery.message.source.system;
  }

  function record(items: Item[], live: Item[], started: number): void {
    if (metrics) {
      metrics.batchSize.observe(items.length);
      metrics.batchSeconds.observe((performance.now() - started) / 1000);
      for (const i of live) {
        metrics.processed.inc({ status: i.outcome.kind, system: systemOf(i) });
        if (i.outcome.kind === "SUCCEEDED") metrics.attempts.observe(i.outcome.delivery.attempt);
      }
      metrics.duplicates.inc(items.length - live.length);
      // A redelivered copy that acts on its attempt: a batch a crash cut short, finished on
      // redelivery (what fault scenario 1b aims at).
      metrics.resumed.inc(live.filter((i) => i.msg.fields.redelivered).length);
    }
    for (const i of live) {
      if (i.outcome.kind === "SUCCEEDED") continue;
      const d = i.outcome.kind === "REJECTED" ? undefined : i.outcome.delivery;
      logger.debug(
        {
          messageId: i.messageId,
          system: d?.message.source.system,
          attempt: d?.attempt,
          status: i.outcome.kind,
          error: i.outcome.error,
        },
        "attempt failed",
      );
    }
  }

  function toLogDocument(item: Item, now: Date, durationMs: number): LogDocument {
    const { outcome } = item;
    const failed = outcome.kind !== "SUCCEEDED";
    const terminal = outcome.kind === "DEAD_LETTERED" || outcome.kind === "REJECTED";
    const common = {
      messageId: item.messageId,
      status: outcome.kind,
      maxAttempts: config.retry.maxAttempts,
      processedAt: now,
      expiresAt: terminal ? null : log.expiryFrom(now),
      retained: terminal,
      durationMs,
      consumerId,
      copyId: item.copy,
      error: failed ? outcome.error : null,
    };
    if (outcome.kind === "REJECTED") {
      const headers = item.msg.properties.headers ?? {};
      const attempt = Number(headers[HEADERS.attempt]);
      return {
        ...common,
        round: 0,
        attempt: Number.isSafeInteger(attempt) && attempt > 0 ? attempt : 0,
        requiredAttempts: null,
        system: null,
        orderId: null,
        source: { system: null, orderId: null, publishedAt: null },
        order: null,
      };
    }
    return { ...common, ...deliveryLogFields(outcome.delivery) };
  }

  function toEvent(item: Item, now: Date): ProcessingEvent {
    const { outcome } = item;
    const d = outcome.kind === "REJECTED" ? undefined : outcome.delivery;
    return {
      messageId: item.messageId,
      system: d?.message.source.system ?? null,
      orderId: d?.message.source.orderId ?? null,
      attempt: d?.attempt ?? 0,
      round: d?.round ?? 0,
      status: outcome.kind,
      at: now.toISOString(),
      ...(outcome.kind !== "SUCCEEDED" ? { error: outcome.error.slice(0, 500) } : {}),
    };
  }

  return {
    start() {
      broker.onConnect(setup);
    },
    async stop() {
      stopping = true;
      const ch = channel;
      if (ch && consumerTag) await ch.cancel(consumerTag).catch(() => undefined);
      // Finish what was delivered before the cancel took effect.
      flushDue = true;
      kick();
      while (pumping) await pumping;
      if (buffer.length > 0 && channel) {
        flushDue = true;
        kick();
      }
      while (pumping) await pumping;
      channel = undefined;
      if (ch) await ch.close().catch(() => undefined);
    },
    ready: () => channel !== undefined && consumerTag !== undefined,
    stats: () => ({ processed, batches, inFlight: unacked }),
  };
}

/**
 * The id of a message whose contract could not be read and that carries no message id:
 * a name-based UUID of its bytes and copy, so every redelivery of the copy logs and
 * counts under the same id (and its claim holds), instead of a new one each time.
 */
export function unreadableMessageId(content: Buffer, copy: string): string {
  const h = createHash("sha1").update(content).update("\0").update(copy).digest();
  h[6] = (h[6]! & 0x0f) | 0x50;
  h[8] = (h[8]! & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString("hex");
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}
