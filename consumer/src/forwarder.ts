// The forwarder: what goes back to the broker for a processed batch, its retry
// copies and dead letters, and its ack. In this order, because a broker that
// crashes keeps only what it confirmed:
//
//   1. copies whose forwards an earlier delivery had confirmed are left out
//   2. the rest are published on the confirm channel; the broker confirms each one
//   3. the batch is acked (multiple = true) on the consume channel
//   4. the copies whose forwards were confirmed are marked in Redis
//
// An AMQP transaction holding the publishes and the ack is atomic only against a
// channel or consumer that dies: the broker applies the acks as soon as it has
// routed the publishes, and a SIGKILLed broker kept a quorum primary's acks
// without the classic DLQ's dead letters (tests/faults/03b-broker-kill.test.ts, scenario 3c).
// A batch redelivered after step 2 (its channel or the broker went away before the
// ack, or a broker crash lost the ack) skips in step 1 what step 4 marked ("acks a
// redelivered copy without forwarding again once its forward was confirmed", and
// fault scenario 1b). What was confirmed but not marked goes out again: the consumer
// process died between the confirm and step 4, or the broker died after keeping a
// message but before its confirm arrived. The next attempt's claim absorbs a retry copy sent twice; a
// dead letter sent twice stays in the DLQ twice.
import type { Channel, ConsumeMessage, Options } from "amqplib";
import type { Redis } from "ioredis";

import { txCommit } from "../../common/amqp-tx.ts";
import type { Broker } from "../../common/broker.ts";
import type { Config } from "../../common/config.ts";
import { CONTENT_TYPE, HEADERS, isDerivedCopyId, withNewCopyId } from "../../common/contract.ts";
import { errorMessage, sleep } from "../../common/errors.ts";
import { forwardedKey } from "../../common/keys.ts";
import type { Logger } from "../../common/logger.ts";
import type { Topology } from "../../common/topology.ts";
import { noTracing, type Tracing } from "../../common/tracing.ts";
import { deadReasonOf, type Outcome } from "./decide.ts";

const MAX_REASON_LENGTH = 200;
/** A copy redelivered later than this after its forward was confirmed forwards again. */
const FORWARDED_TTL_SECONDS = 24 * 3600;
const MARK_TRIES = 8;

/** A delivery whose attempt failed: a retry copy or a dead letter goes out for it. */
export interface ForwardItem {
  msg: ConsumeMessage;
  outcome: Exclude<Outcome, { kind: "SUCCEEDED" }>;
  /** The physical copy the delivery is (kept across redeliveries). */
  copy: string;
  messageId: string;
  /** When the attempt that dead-lettered it began: the x-dead-at header, and its score in its dead-letter group. */
  deadAt?: Date;
}

export class ForwardAborted extends Error {
  override name = "ForwardAborted";
}

export interface Forwarder {
  /**
   * Forwards the batch's failed attempts, then returns `requeue` to the queue one by one and acks
   * the rest of the batch (multiple = true up to `last`) on the consume channel `ch` (in
   * transaction mode). Store and publish failures are retried while `alive()`; rejects with
   * ForwardAborted once it is not, and the batch is redelivered.
   */
  commit(
    ch: Channel,
    items: ForwardItem[],
    last: ConsumeMessage | undefined,
    alive: () => boolean,
    requeue?: ConsumeMessage[],
  ): Promise<void>;
}

interface Context {
  config: Config;
  broker: Broker;
  redis: Redis;
  logger: Logger | undefined;
  tracing: Tracing;
}

export function createForwarder(deps: {
  config: Config;
  broker: Broker;
  redis: Redis;
  logger?: Logger;
  tracing?: Tracing;
}): Forwarder {
  const ctx: Context = { ...deps, logger: deps.logger, tracing: deps.tracing ?? noTracing };
  return {
    async commit(ch, items, last, alive, requeue = []) {
      const fresh = await notYetForwarded(ctx, items, alive);
      const confirmed: ForwardItem[] = [];
      try {
        await publishConfirmed(ctx, fresh, alive, confirmed);
        // Only now may the deliveries go: everything they forward is in the broker's keeping.
        if (!alive()) throw new ForwardAborted("ack: the consume channel is gone");
        // Returned first, so that the multiple ack after them does not take them too.
        for (const msg of requeue) ch.nack(msg, false, true);
        if (last) ch.ack(last, true);
        await txCommit(ch);
      } finally {
        await markForwarded(ctx, confirmed);
      }
    },
  };
}

/** Where a failed attempt goes and what it carries: a retry copy to its wait queue, or a dead letter. */
export function toMessage(
  config: Config,
  topology: Topology,
  item: ForwardItem,
): { queue: string; content: Buffer; options: Options.Publish } {
  const { msg, outcome } = item;
  const props = msg.properties;
  const headers = withNewCopyId(props.headers);
  delete headers["x-death"];
  const options: Options.Publish = {
    persistent: true,
    contentType: props.contentType ?? CONTENT_TYPE,
    messageId: item.messageId,
    timestamp: props.timestamp ?? Math.floor(Date.now() / 1000),
    type: props.type,
    headers,
  };
  if (outcome.kind === "RETRY_SCHEDULED") {
    const { attempt } = outcome.delivery;
    headers[HEADERS.attempt] = attempt + 1;
    return { queue: topology.waitQueueFor(attempt), content: msg.content, options };
  }
  // Dead letters keep a short reason in the headers; the full error is in the attempt log.
  headers[HEADERS.deadReason] = deadReasonOf(outcome).slice(0, MAX_REASON_LENGTH);
  headers[HEADERS.deadAttempts] = outcome.kind === "DEAD_LETTERED" ? outcome.delivery.attempt : 0;
  headers[HEADERS.deadAt] = (item.deadAt ?? new Date()).toISOString();
  headers[HEADERS.consumerId] = config.consumer.id;
  return { queue: topology.dlq, content: msg.content, options };
}

/** Retries fn with backoff while the batch's channel is alive. */
async function whileAlive<T>(ctx: Context, alive: () => boolean, step: string, fn: () => Promise<T>): Promise<T> {
  for (let delay = 100; ; delay = Math.min(delay * 2, 5000)) {
    if (!alive()) throw new ForwardAborted(`${step}: the consume channel is gone`);
    try {
      return await fn();
    } catch (err) {
      if (!alive()) throw new ForwardAborted(`${step}: the consume channel is gone`, { cause: err });
      ctx.logger?.warn({ step, retryInMs: delay, err: errorMessage(err) }, "forward step failed; holding the batch");
      await sleep(delay);
    }
  }
}

/**
 * The items whose copy has no forward confirmed yet (a redelivery after a lost ack has one). A
 * delivery without a copy id of its own is always forwarded: its id is derived from its content,
 * which another publish of the same content shares ("dead-letters every one of identical
 * unreadable messages").
 */
async function notYetForwarded(ctx: Context, items: ForwardItem[], alive: () => boolean): Promise<ForwardItem[]> {
  const marked = items.filter((i) => !isDerivedCopyId(i.copy));
  if (marked.length === 0) return items;
  const keys = marked.map((i) => forwardedKey(ctx.config, i.copy));
  const done = await whileAlive(ctx, alive, "redis-forwarded", () => ctx.redis.mget(keys));
  const forwarded = new Set(marked.filter((_, idx) => done[idx] !== null));
  return items.filter((i) => !forwarded.has(i));
}

/** Publishes each item until the broker confirms it; resolves with those confirmed, rejects once the channel is gone. */
async function publishConfirmed(
  ctx: Context,
  items: ForwardItem[],
  alive: () => boolean,
  confirmed: ForwardItem[],
): Promise<void> {
  const { broker, tracing } = ctx;
  const { topology } = broker;
  let pending = items.map((item) => ({ item, message: toMessage(ctx.config, topology, item) }));
  await whileAlive(ctx, alive, "forward", async () => {
    const results = await Promise.allSettled(
      pending.map(({ item, message: m }) =>
        tracing.forward(item.msg, { queue: m.queue, deadLetter: m.queue === topology.dlq, options: m.options }, () =>
          broker.publish("", m.queue, m.content, m.options),
        ),
      ),
    );
    const failed = results.flatMap((r) => (r.status === "rejected" ? [r.reason as Error] : []));
    confirmed.push(...pending.filter((_, idx) => results[idx]!.status === "fulfilled").map((p) => p.item));
    pending = pending.filter((_, idx) => results[idx]!.status === "rejected");
    if (failed.length > 0) throw failed[0]!;
  });
}

/** Marks forwarded copies; a redelivery that finds the mark acks without forwarding again. */
async function markForwarded(ctx: Context, all: ForwardItem[]): Promise<void> {
  const items = all.filter((i) => !isDerivedCopyId(i.copy));
  if (items.length === 0) return;
  for (let tries = 1, delay = 100; ; tries++, delay = Math.min(delay * 2, 5000)) {
    try {
      const p = ctx.redis.pipeline();
      for (const i of items) p.set(forwardedKey(ctx.config, i.copy), "1", "EX", FORWARDED_TTL_SECONDS);
      const results = await p.exec();
      const failed = results?.find(([err]) => err);
      if (failed) throw failed[0];
      return;
    } catch (err) {
      if (tries >= MARK_TRIES) {
        // Only a redelivery of these copies (a lost ack) would forward them again.
        ctx.logger?.error({ copies: items.length, err: errorMessage(err) }, "could not mark forwarded copies");
        return;
      }
      await sleep(delay);
    }
  }
}
