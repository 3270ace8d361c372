// The consumer: takes deliveries from the primary queue in micro-batches and, per
// batch, makes every side effect durable before acknowledging anything:
//
//   1. a claim in Redis per attempt, owned by the physical copy that made it
//   2. endput rows for successes (idempotent: unique on system + source order id)
//   3. one attempt-log document per delivery (idempotent: unique index)
//   4. events and counters in Redis
//   5. in delivery order, the batch's retry copies and dead letters, each confirmed
//      by the broker, and only then its ack (multiple = true): see forwarder.ts
//
// A crash anywhere before the ack redelivers the batch; steps 2 and 3 are
// idempotent and the redelivered copy still owns its claims, so it forwards what
// the first delivery had not; what that delivery had forwarded is marked and not
// forwarded again (forwarder.ts says which windows remain). Another copy of an
// attempt (a publisher's retry after a crash, a redrive run twice) finds the claim
// taken and is acked without being forwarded. A store that is down holds the
// batch (no ack, prefetch stops new deliveries) and retries with backoff until it
// is back.
import { randomUUID } from "node:crypto";

import type { Channel, ChannelModel, ConsumeMessage } from "amqplib";
import type { Redis } from "ioredis";

import type { AttemptLog, LogDocument } from "../../common/attempt-log.ts";
import { type Broker, txSelect } from "../../common/broker.ts";
import type { Config } from "../../common/config.ts";
import { copyIdOf, HEADERS } from "../../common/contract.ts";
import { errorMessage, sleep } from "../../common/errors.ts";
import { eventsTopic, type ProcessingEvent } from "../../common/events.ts";
import { counterKey, doneKey } from "../../common/keys.ts";
import type { Logger } from "../../common/logger.ts";
import type { EndputClient } from "../../common/stores.ts";
import { decide, type Outcome } from "./decide.ts";
import { createForwarder, type ForwardItem } from "./forwarder.ts";
import type { ConsumerMetrics } from "./metrics.ts";
import { claimAttempts, deliveryLogFields, insertEndputRows } from "./records.ts";

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
  key: string | undefined;
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
}): Consumer {
  const { config, logger, broker, endput, log, redis, metrics } = deps;
  const topology = broker.topology;
  const consumerId = config.consumer.id;
  const topic = eventsTopic(config);
  const forwarder = createForwarder({ config, broker, redis, logger });

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
        const run: Promise<void> = runBatch(ch, batch, previous)
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
      return true;
    } catch (err) {
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
    const seen = new Set<string>();
    return batch.map((msg) => {
      const outcome = decide(msg.content, msg.properties.headers, {
        maxAttempts: config.retry.maxAttempts,
        maxMessageBytes: config.consumer.maxMessageBytes,
      });
      const d = outcome.kind === "REJECTED" ? undefined : outcome.delivery;
      const key = d ? doneKey(config, d.message.messageId, d.round, d.attempt) : undefined;
      const duplicate = key !== undefined && seen.has(key);
      if (key) seen.add(key);
      const propId = typeof msg.properties.messageId === "string" ? msg.properties.messageId : undefined;
      return {
        msg,
        outcome,
        key,
        duplicate,
        copy: copyIdOf(msg.content, msg.properties.headers),
        messageId: d?.message.messageId ?? propId ?? randomUUID(),
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

    // Only the copy that owns an attempt's claim acts on it; any other copy is a
    // duplicate. Its log entry is still written (idempotently).
    const unique = items.filter((i) => !i.duplicate);
    const keyed = unique.filter((i) => i.key);
    if (keyed.length > 0) {
      const owned = await durably(ch, "redis-claim", () =>
        claimAttempts(
          redis,
          keyed.map((i) => i.key!),
          keyed.map((i) => i.copy),
        ),
      );
      owned.forEach((mine, idx) => !mine && (keyed[idx]!.duplicate = true));
    }
    const live = items.filter((i) => !i.duplicate);

    const successes = live.filter((i) => i.outcome.kind === "SUCCEEDED");
    if (successes.length > 0) {
      const rows = successes.map(({ outcome }) => (outcome as Extract<Outcome, { kind: "SUCCEEDED" }>).delivery);
      await durably(ch, "endput", () => insertEndputRows(endput, rows));
    }

    const forwards = live.filter((i): i is Item & ForwardItem => i.outcome.kind !== "SUCCEEDED");

    const perItemMs = (performance.now() - started) / Math.max(1, items.length);
    const docs = unique.map((i) => toLogDocument(i, now, perItemMs));
    await durably(ch, "mongo", async () => {
      await log.insert(docs);
      await log.retain(live.filter((i) => i.outcome.kind === "DEAD_LETTERED").map((i) => i.messageId));
    });

    if (live.length > 0) {
      await durably(ch, "redis", async () => {
        const p = redis.pipeline();
        const counts = new Map<string, number>();
        for (const i of live) {
          p.publish(topic, JSON.stringify(toEvent(i, now)));
          const field = `${systemOf(i)}:${i.outcome.kind}`;
          counts.set(field, (counts.get(field) ?? 0) + 1);
        }
        for (const [field, n] of counts) p.hincrby(counterKey(config), field, n);
        const results = await p.exec();
        const failed = results?.find(([err]) => err);
        if (failed) throw failed[0];
      });
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
