// The batch processor: one batch's side effects, in the order that makes a crash safe. Before
// anything of the batch is acked (the pump commits it after, with its forwards: forwarder.ts):
//
//   1. claims: one attempt-log document per delivery, carrying its copy id; the first copy to log
//      an attempt owns it, durably, for as long as the log keeps the entry. Beside them, the
//      successes' endput rows (idempotent, unique on system + source order id: the same row
//      whichever copy writes it)
//   2. the choice of the copies that act: only after every copy in the batch claimed
//   3. the owned attempts' counters and events in Redis, each at most once
//
// A crash anywhere before the ack redelivers the batch; step 1 is idempotent and the redelivered
// copy still owns its claims, so it forwards what the first delivery had not ("lets only the copy
// that claimed an attempt forward it, also after a redelivery").
import type { ConsumeMessage } from "amqplib";
import type { Redis } from "ioredis";
import type pg from "pg";

import type { AttemptLog, LogDocument } from "../../common/attempt-log.ts";
import type { Config } from "../../common/config.ts";
import { copyIdOf, isDerivedCopyId } from "../../common/contract.ts";
import { errorMessage } from "../../common/errors.ts";
import { countEventsOnce } from "../../common/events.ts";
import type { Logger } from "../../common/logger.ts";
import { noTracing, type Tracing } from "../../common/tracing.ts";
import { decide, deliveryOf, rejectRedelivered, rejectRefused as rejectOutcome } from "./decide.ts";
import type { ForwardItem } from "./forwarder.ts";
import { type Attempt, deadLetterOf, type LogContext, messageIdOf, systemOf, toEvent, toLogDocument } from "./mappers.ts";
import type { ConsumerMetrics } from "./metrics.ts";
import { insertEndputRows } from "./records.ts";
import type { RedeliveryCounter } from "./redeliveries.ts";
import { refusalOf, type StoreRefused, writeIsolating } from "./store-errors.ts";
import { createStoreRetry, type Durably } from "./store-retry.ts";

/** A delivery in a batch: its attempt, the attempt's log document (and claim), and whether another copy acts on it. */
export interface Item extends Attempt {
  doc: LogDocument;
  duplicate: boolean;
}

/** A batch whose side effects are durable: what to forward with its ack, what to return to the queue, and what to record once it is acked. */
export interface ProcessedBatch {
  forwards: ForwardItem[];
  requeue: ConsumeMessage[];
  record(): void;
}

export interface BatchProcessor {
  /** Makes the batch's side effects durable; rejects with ChannelGone once `alive` turns false. */
  process(batch: ConsumeMessage[], alive: () => boolean): Promise<ProcessedBatch>;
}

/**
 * Chooses the copies that act, once every copy in the batch claimed: the owner may be a later
 * copy in the batch ("forwards an attempt whose claim the second of two copies in one batch
 * holds"). The copy that owns an attempt acts on it, once per batch; any other copy is a
 * duplicate, acked without being forwarded or counted, also when it is another publish of the
 * attempt that finds the claim taken ("does not process an attempt again once Redis lost its
 * keys"). An attempt logged without a copy id (before copies were recorded) goes to its first
 * copy here. Returns the acting items; marks the others duplicate.
 */
export function chooseActing<T extends Pick<Item, "doc" | "copy" | "duplicate">>(
  items: T[],
  ownerOf: Map<T, string | null>,
): T[] {
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
  return items.filter((i) => !i.duplicate);
}

/** What the steps of a batch share: its stores, its observers and how it retries a store. */
interface Context {
  config: Config;
  logger: Logger;
  endput: pg.Pool;
  log: AttemptLog;
  redis: Redis;
  redeliveries: RedeliveryCounter;
  metrics: ConsumerMetrics | undefined;
  tracing: Tracing;
  decide: typeof decide;
  durably: Durably;
  logContext: LogContext;
}

/** What a processor is given: the stores and observers of Context; tests may give their own `decide`. */
type ProcessorDeps = Pick<Context, "config" | "logger" | "endput" | "log" | "redis" | "redeliveries"> & {
  metrics?: ConsumerMetrics | undefined;
  tracing?: Tracing;
  /** What to do with one delivery (decide.ts); tests give one that fails on a chosen message. */
  decide?: typeof decide | undefined;
};

export function createBatchProcessor(deps: ProcessorDeps): BatchProcessor {
  const { config, logger, metrics, log } = deps;
  const ctx: Context = {
    ...deps,
    metrics,
    tracing: deps.tracing ?? noTracing,
    decide: deps.decide ?? decide,
    durably: createStoreRetry({ logger, metrics }),
    logContext: {
      maxAttempts: config.retry.maxAttempts,
      consumerId: config.consumer.id,
      expiryFrom: (now) => log.expiryFrom(now),
    },
  };
  return { process: (batch, alive) => processBatch(ctx, batch, alive) };
}

async function processBatch(ctx: Context, batch: ConsumeMessage[], alive: () => boolean): Promise<ProcessedBatch> {
  const started = performance.now();
  // processedAt is when the attempt began, so the gap between attempts is never shorter than the retry delay.
  const now = new Date();
  const { items, requeue } = await classify(ctx, batch, alive, now);
  const perItemMs = (performance.now() - started) / Math.max(1, items.length);
  for (const i of items) i.doc.durationMs = perItemMs;
  ctx.tracing.startAttempts(
    items.map((i) => i.msg),
    items.map((i) => i.doc),
  );
  const live = chooseActing(items, await claim(ctx, items, alive, now));
  const forwards = forwardsOf(live, now);
  await retainDead(ctx, forwards, alive);
  await count(ctx, live, alive, now);
  return { forwards, requeue, record: () => record(ctx, items, live, started) };
}

/**
 * What each delivery is and what happened to it. A copy past the redelivery bound is rejected
 * unprocessed; one whose processing throws is returned to the queue alone (the failure is
 * counted), so the rest of the batch is acked ("rejects a message whose processing throws, after
 * the redelivery bound, and acks the rest of its batch").
 */
async function classify(
  ctx: Context,
  batch: ConsumeMessage[],
  alive: () => boolean,
  now: Date,
): Promise<{ items: Item[]; requeue: ConsumeMessage[] }> {
  const { durably, redeliveries, logger } = ctx;
  const copies = batch.map((msg) => ({ msg, copy: copyIdOf(msg.content, msg.properties.headers) }));
  const counts = await durably(alive, "redis", () => redeliveries.count(copies));
  const items: Item[] = [];
  const failed: typeof copies = [];
  copies.forEach(({ msg, copy }, idx) => {
    try {
      items.push(toItem(ctx, msg, copy, counts[idx]!, now));
    } catch (err) {
      logger.error(
        { err: errorMessage(err), stack: (err as Error).stack, copy, redeliveries: counts[idx] },
        "processing a delivery failed; returning it to the queue",
      );
      failed.push({ msg, copy });
    }
  });
  if (failed.length > 0) await durably(alive, "redis", () => redeliveries.failed(failed.map((f) => f.copy)));
  return { items, requeue: failed.map((f) => f.msg) };
}

function toItem(ctx: Context, msg: ConsumeMessage, copy: string, redelivered: number, now: Date): Item {
  const { content, properties } = msg;
  const { maxMessageBytes, maxRedeliveries } = ctx.config.consumer;
  const outcome =
    redelivered > maxRedeliveries
      ? rejectRedelivered(content, properties.headers, redelivered, { maxRedeliveries, maxMessageBytes })
      : ctx.decide(content, properties.headers, { maxAttempts: ctx.config.retry.maxAttempts, maxMessageBytes });
  const attempt: Attempt = { msg, outcome, copy, messageId: messageIdOf(msg, outcome, copy) };
  return { ...attempt, duplicate: false, doc: toLogDocument(attempt, now, ctx.logContext) };
}

/**
 * Every copy claims (logs) its attempt; the endput insert does not wait for the claims: it is
 * idempotent, and any copy of a success writes the same row. Returns each item's claim owner.
 */
async function claim(ctx: Context, items: Item[], alive: () => boolean, now: Date): Promise<Map<Item, string | null>> {
  const successes = items.filter((i) => i.outcome.kind === "SUCCEEDED");
  const [owners, refused] = await Promise.all([
    ctx.durably(alive, "mongo", () => ctx.log.claim(items.map((i) => i.doc))),
    writeEndput(ctx, alive, successes),
  ]);
  const ownerOf = new Map<Item, string | null>(items.map((item, idx) => [item, owners[idx]!]));
  if (refused.size > 0) for (const [item, owner] of await rejectRefused(ctx, alive, refused, now)) ownerOf.set(item, owner);
  return ownerOf;
}

/**
 * Writes the successes' endput rows; a row the endput refuses for good rejects only its message
 * ("dead-letters only the messages the endput refuses; the rest of their batch is written").
 */
async function writeEndput(ctx: Context, alive: () => boolean, successes: Item[]): Promise<Map<Item, StoreRefused>> {
  const write = (part: Item[]) =>
    ctx.tracing.endputWrite(
      part.map((i) => i.msg),
      () =>
        insertEndputRows(
          ctx.endput,
          part.map((i) => deliveryOf(i.outcome)!),
        ),
    );
  const refused = await writeIsolating(successes, (part) =>
    ctx.durably(
      alive,
      "endput",
      () => write(part),
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
async function rejectRefused(
  ctx: Context,
  alive: () => boolean,
  refused: Map<Item, StoreRefused>,
  now: Date,
): Promise<Map<Item, string | null>> {
  const { durably, log, logger } = ctx;
  const items = [...refused.keys()];
  const succeeded = items.map((i) => ({ ...i.doc }));
  for (const item of items) {
    logger.warn({ messageId: item.messageId, err: refused.get(item)!.message }, "endput refused a row; rejecting its message");
    item.outcome = rejectOutcome(deliveryOf(item.outcome)!, refused.get(item)!);
    item.doc = { ...toLogDocument(item, now, ctx.logContext), durationMs: item.doc.durationMs };
  }
  const owners = await durably(alive, "mongo", () => log.claim(items.map((i) => i.doc)));
  await durably(alive, "mongo", () => log.withdraw(succeeded));
  return new Map(items.map((item, idx) => [item, owners[idx]!]));
}

/** The acting failures: each forwards a retry copy or a dead letter. */
function forwardsOf(live: Item[], now: Date): ForwardItem[] {
  const forwards = live.filter((i): i is Item & ForwardItem => i.outcome.kind !== "SUCCEEDED");
  for (const f of forwards) if (f.outcome.kind !== "RETRY_SCHEDULED") f.deadAt = now;
  return forwards;
}

/** A dead letter's whole history stays while it is in the DLQ (a readable REJECTED one's too). */
async function retainDead(ctx: Context, forwards: ForwardItem[], alive: () => boolean): Promise<void> {
  const dead = forwards
    .filter((i) => i.outcome.kind === "DEAD_LETTERED" || (i.outcome.kind === "REJECTED" && deliveryOf(i.outcome)))
    .map((i) => i.messageId);
  if (dead.length > 0) await ctx.durably(alive, "mongo", () => ctx.log.retain(dead));
}

/**
 * Counts and announces the acting attempts, and adds the dead letters to their groups, once
 * however often the batch is redelivered ("counts and announces an attempt once when its batch
 * is redelivered after the counters").
 */
async function count(ctx: Context, live: Item[], alive: () => boolean, now: Date): Promise<void> {
  if (live.length === 0) return;
  const attempts = live.map((i) => ({ event: toEvent(i, now), dead: deadLetterOf(ctx.config, i, now) }));
  await ctx.durably(alive, "redis", () => countEventsOnce(ctx.redis, ctx.config, attempts));
}

/** Metrics and debug logs of a batch that was acked. */
function record({ metrics, logger }: Context, items: Item[], live: Item[], started: number): void {
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
    const fields = { messageId: i.messageId, system: d?.message.source.system, attempt: d?.attempt };
    logger.debug({ ...fields, status: i.outcome.kind, error: i.outcome.error }, "attempt failed");
  }
}
