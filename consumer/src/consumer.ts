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
// (no ack, prefetch stops new deliveries) and retries with backoff until it is back; a value
// a store refuses for good rejects only the message that carries it (store-errors.ts), and a
// copy that keeps coming back is rejected past CONSUMER_MAX_REDELIVERIES (redeliveries.ts).
import { createHash } from "node:crypto";

import type { Channel, ChannelModel, ConsumeMessage } from "amqplib";
import type { Redis } from "ioredis";

import { txSelect } from "../../common/amqp-tx.ts";
import type { AttemptLog, LogDocument } from "../../common/attempt-log.ts";
import type { Broker } from "../../common/broker.ts";
import type { Config } from "../../common/config.ts";
import { copyIdOf, HEADERS, isDerivedCopyId } from "../../common/contract.ts";
import { deadLetterGroupKey, groupName, groupReasonOf, type GroupSystem } from "../../common/dead-letter-groups.ts";
import { errorMessage, sleep } from "../../common/errors.ts";
import { countEventsOnce, type ProcessingEvent } from "../../common/events.ts";
import type { Logger } from "../../common/logger.ts";
import type { EndputClient } from "../../common/stores.ts";
import { noTracing, type Tracing } from "../../common/tracing.ts";
import { deadReasonOf, decide, deliveryOf, type Outcome, rejectRedelivered, rejectRefused as rejectOutcome } from "./decide.ts";
import { createForwarder, type ForwardItem } from "./forwarder.ts";
import type { ConsumerMetrics } from "./metrics.ts";
import { deliveryLogFields, insertEndputRows } from "./records.ts";
import { createRedeliveryCounter } from "./redeliveries.ts";
import { refusalOf, type StoreRefused, writeIsolating } from "./store-errors.ts";

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
  /** The attempt-log document (and claim) of this delivery's attempt. */
  doc: LogDocument;
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
  /** What to do with one delivery (decide.ts); tests give one that fails on a chosen message. */
  decide?: typeof decide;
  tracing?: Tracing;
}): Consumer {
  const { config, logger, broker, endput, log, redis, metrics, tracing = noTracing } = deps;
  const decideOne = deps.decide ?? decide;
  const topology = broker.topology;
  const consumerId = config.consumer.id;
  const forwarder = createForwarder({ config, broker, redis, logger, tracing });
  const redeliveries = createRedeliveryCounter(redis, config);

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
  // Arrival times of the deliveries held unacked, in delivery order: acks go in that order too.
  let unackedSince: number[] = [];
  metrics?.watchUnacked(() => unackedSince[0] ?? null);

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
      unackedSince = [];
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
    unackedSince.push(Date.now());
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
      const { forwards, requeue, finish } = await processBatch(ch, batch);
      // Acking with multiple = true would also ack an earlier batch that failed: never do that.
      if (!(await previous)) throw new ChannelGone();
      assertAlive(ch);
      const back = new Set(requeue);
      const last = batch.findLast((m) => !back.has(m));
      try {
        await forwarder.commit(ch, forwards, last, () => ch === channel && !condemned.has(ch), requeue);
      } catch (err) {
        // The ack did not go with the channel: the broker redelivers the batch.
        logger.warn({ err: errorMessage(err) }, "commit failed");
        throw new ChannelGone();
      }
      unacked -= batch.length;
      unackedSince.splice(0, batch.length);
      finish();
      tracing.endAttempts(batch);
      return true;
    } catch (err) {
      tracing.endAttempts(batch, err);
      if (err instanceof ChannelGone) {
        logger.warn({ dropped: batch.length }, "channel closed mid-batch; the broker redelivers it");
        return false;
      }
      // Unexpected outside any one message: leave the batch uncommitted on a channel we close, so
      // it is redelivered; each copy's failure counts towards the redelivery bound.
      condemned.add(ch);
      logger.error({ err: errorMessage(err), stack: (err as Error).stack }, "batch failed; closing the channel for redelivery");
      const copies = batch.map((m) => copyIdOf(m.content, m.properties.headers));
      await redeliveries
        .failed(copies)
        .catch((e: unknown) => logger.warn({ err: errorMessage(e) }, "could not count the failure"));
      await ch.close().catch(() => undefined);
      return false;
    }
  }

  function assertAlive(ch: Channel): void {
    if (ch !== channel || condemned.has(ch)) throw new ChannelGone();
  }

  /**
   * Runs a step until it succeeds; gives up only when the channel the batch came on is gone, or
   * when `refusal` says the store refused the write for good (it throws that refusal).
   */
  async function durably<T>(
    ch: Channel,
    step: string,
    fn: () => Promise<T>,
    refusal: (err: unknown) => StoreRefused | undefined = () => undefined,
  ): Promise<T> {
    let delay = 100;
    for (let tries = 1; ; tries++) {
      assertAlive(ch);
      try {
        return await fn();
      } catch (err) {
        assertAlive(ch);
        const refused = refusal(err);
        if (refused) throw refused;
        logger.warn({ step, tries, retryInMs: delay, err: errorMessage(err) }, "store write failed; holding the batch");
        metrics?.storeErrors.inc({ step });
        await sleep(delay);
        delay = Math.min(delay * 2, 5000);
      }
    }
  }

  /**
   * What each delivery is and what happened to it. A copy past the redelivery bound is rejected
   * unprocessed; one whose processing throws is returned to the queue alone (the failure is
   * counted), so the rest of the batch is acked ("rejects a message whose processing throws, after
   * the redelivery bound, and acks the rest of its batch").
   */
  async function classify(
    ch: Channel,
    batch: ConsumeMessage[],
    now: Date,
  ): Promise<{ items: Item[]; requeue: ConsumeMessage[] }> {
    const copies = batch.map((msg) => ({ msg, copy: copyIdOf(msg.content, msg.properties.headers) }));
    const counts = await durably(ch, "redis", () => redeliveries.count(copies));
    const items: Item[] = [];
    const failed: typeof copies = [];
    copies.forEach(({ msg, copy }, idx) => {
      try {
        items.push(toItem(msg, copy, counts[idx]!, now));
      } catch (err) {
        logger.error(
          { err: errorMessage(err), stack: (err as Error).stack, copy, redeliveries: counts[idx] },
          "processing a delivery failed; returning it to the queue",
        );
        failed.push({ msg, copy });
      }
    });
    if (failed.length > 0) await durably(ch, "redis", () => redeliveries.failed(failed.map((f) => f.copy)));
    return { items, requeue: failed.map((f) => f.msg) };
  }

  function toItem(msg: ConsumeMessage, copy: string, redeliveries: number, now: Date): Item {
    const { content, properties } = msg;
    const { maxMessageBytes, maxRedeliveries } = config.consumer;
    const outcome =
      redeliveries > maxRedeliveries
        ? rejectRedelivered(content, properties.headers, redeliveries, { maxRedeliveries, maxMessageBytes })
        : decideOne(content, properties.headers, { maxAttempts: config.retry.maxAttempts, maxMessageBytes });
    // A message id the log cannot hold (a NUL, on FerretDB) would fail the batch's log write forever.
    const propId =
      typeof properties.messageId === "string" && !properties.messageId.includes("\u0000") ? properties.messageId : undefined;
    const item: Omit<Item, "doc"> = {
      msg,
      outcome,
      duplicate: false,
      copy,
      messageId: deliveryOf(outcome)?.message.messageId ?? propId ?? unreadableMessageId(content, copy),
      receivedAt: Date.now(),
    };
    return { ...item, doc: toLogDocument(item, now) };
  }

  /**
   * Writes the successes' endput rows; a row the endput refuses for good rejects only its message
   * ("dead-letters only the messages the endput refuses; the rest of their batch is written").
   */
  async function writeEndput(ch: Channel, successes: Item[]): Promise<Map<Item, StoreRefused>> {
    const refused = await writeIsolating(successes, (part) =>
      durably(
        ch,
        "endput",
        () =>
          tracing.endputWrite(
            part.map((i) => i.msg),
            () =>
              insertEndputRows(
                endput,
                part.map((i) => deliveryOf(i.outcome)!),
              ),
          ),
        (err) => refusalOf("endput", err),
      ),
    );
    return new Map([...refused].map(([idx, refusal]) => [successes[idx]!, refusal]));
  }

  /**
   * Turns refused successes into rejections: logs (claims) their REJECTED attempt, then withdraws
   * the SUCCEEDED entry the batch logged beside the refused write. Both are idempotent, so a
   * redelivery in between does the same again. Returns the owners of the REJECTED claims.
   */
  async function rejectRefused(ch: Channel, refused: Map<Item, StoreRefused>, now: Date): Promise<Map<Item, string | null>> {
    const items = [...refused.keys()];
    const succeeded = items.map((i) => ({ ...i.doc }));
    for (const item of items) {
      logger.warn({ messageId: item.messageId, err: refused.get(item)!.message }, "endput refused a row; rejecting its message");
      item.outcome = rejectOutcome(deliveryOf(item.outcome)!, refused.get(item)!);
      item.doc = { ...toLogDocument(item, now), durationMs: item.doc.durationMs };
    }
    const owners = await durably(ch, "mongo", () => log.claim(items.map((i) => i.doc)));
    await durably(ch, "mongo", () => log.withdraw(succeeded));
    return new Map(items.map((item, idx) => [item, owners[idx]!]));
  }

  /** Makes the batch's side effects durable; returns what to forward with the ack, what to return to the queue, and what to record after. */
  async function processBatch(
    ch: Channel,
    batch: ConsumeMessage[],
  ): Promise<{ forwards: ForwardItem[]; requeue: ConsumeMessage[]; finish: () => void }> {
    const started = performance.now();
    // processedAt is when the attempt began, so the gap between attempts is never shorter than the retry delay.
    const now = new Date();
    const { items, requeue } = await classify(ch, batch, now);
    const perItemMs = (performance.now() - started) / Math.max(1, items.length);
    for (const i of items) i.doc.durationMs = perItemMs;
    tracing.startAttempts(
      items.map((i) => i.msg),
      items.map((i) => i.doc),
    );

    // Every copy claims (logs) its attempt; the endput insert does not wait for the
    // claims: it is idempotent, and any copy of a success writes the same row.
    const successes = items.filter((i) => i.outcome.kind === "SUCCEEDED");
    const [owners, refused] = await Promise.all([
      durably(ch, "mongo", () => log.claim(items.map((i) => i.doc))),
      writeEndput(ch, successes),
    ]);
    const ownerOf = new Map<Item, string | null>(items.map((item, idx) => [item, owners[idx]!]));
    if (refused.size > 0) for (const [item, owner] of await rejectRefused(ch, refused, now)) ownerOf.set(item, owner);

    // Then choose: the copy that owns an attempt acts on it, once per batch; any other copy is a duplicate.
    // An attempt logged without a copy id (before copies were recorded) goes to its first copy here.
    const acting = new Set<string>();
    for (const item of items) {
      const { doc } = item;
      const attempt = `${doc.messageId}:${doc.round}:${doc.attempt}:${doc.status}`;
      const owner = ownerOf.get(item)!;
      // Two deliveries in one batch are two messages. Sharing a copy id of their own, they are a
      // broker's duplicate, acted on once; sharing one derived from identical content, they are two
      // publishes, and each is acted on ("dead-letters every one of identical unreadable messages").
      const oncePerBatch = owner === null || !isDerivedCopyId(item.copy);
      item.duplicate = (owner !== null && owner !== item.copy) || (oncePerBatch && acting.has(attempt));
      if (!item.duplicate) acting.add(attempt);
    }
    const live = items.filter((i) => !i.duplicate);
    const forwards = live.filter((i): i is Item & ForwardItem => i.outcome.kind !== "SUCCEEDED");
    for (const f of forwards) if (f.outcome.kind !== "RETRY_SCHEDULED") f.deadAt = now;

    // A dead letter's whole history stays while it is in the DLQ (a readable REJECTED one's too).
    const dead = forwards
      .filter((i) => i.outcome.kind === "DEAD_LETTERED" || (i.outcome.kind === "REJECTED" && deliveryOf(i.outcome)))
      .map((i) => i.messageId);
    if (dead.length > 0) await durably(ch, "mongo", () => log.retain(dead));

    if (live.length > 0) {
      const attempts = live.map((i) => ({ event: toEvent(i, now), dead: deadLetterOf(i, now) }));
      await durably(ch, "redis", () => countEventsOnce(redis, config, attempts));
    }

    return {
      forwards,
      requeue,
      finish: () => {
        processed += batch.length;
        batches++;
        record(items, live, started);
      },
    };
  }

  /** The dead-letter group a dead letter joins, by the reason its x-dead-reason header will carry. */
  function deadLetterOf(i: Pick<Item, "outcome" | "messageId">, now: Date) {
    if (i.outcome.kind !== "DEAD_LETTERED" && i.outcome.kind !== "REJECTED") return undefined;
    // Groups name a rejection's system UNKNOWN even when the message was readable: a DLQ walk
    // cannot tell those apart from unreadable ones, and it must find the same group to remove from.
    const system: GroupSystem = i.outcome.kind === "REJECTED" ? "UNKNOWN" : (systemOf(i) as GroupSystem);
    const reason = groupReasonOf(deadReasonOf(i.outcome));
    return {
      groupKey: deadLetterGroupKey(config, system, reason),
      group: groupName(system, reason),
      messageId: i.messageId,
      deadAt: now,
    };
  }

  function systemOf(i: Pick<Item, "outcome">): string {
    return deliveryOf(i.outcome)?.message.source.system ?? "UNKNOWN";
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
      const d = deliveryOf(i.outcome);
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

  function toLogDocument(item: Omit<Item, "doc">, now: Date): LogDocument {
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
      durationMs: null,
      consumerId,
      copyId: item.copy,
      error: failed ? outcome.error : null,
    };
    const delivery = deliveryOf(outcome);
    if (!delivery) {
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
    return { ...common, ...deliveryLogFields(delivery) };
  }

  function toEvent(item: Omit<Item, "doc">, now: Date): ProcessingEvent {
    const { outcome } = item;
    const d = deliveryOf(outcome);
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
