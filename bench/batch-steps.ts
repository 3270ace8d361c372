// Where a happy-path batch spends its time: replays the consumer's per-batch
// work (decode, endput insert, the attempt-log claims,
// Redis events + counters script of common/events.ts) with the same clients on the
// same services, timing each step, plus variants to compare it with. The
// round trips per batch are fixed (one per step), so the step times say which
// store bounds the consumer.
import { randomUUID } from "node:crypto";

import type { Redis } from "ioredis";
import type pg from "pg";

import { type AttemptLog, createAttemptLog, type LogDocument } from "../common/attempt-log.ts";
import { type Config } from "../common/config.ts";
import { type DecodedDelivery as Delivery, encodeMessage, HEADERS, type System } from "../common/contract.ts";
import { countEventsOnce, type ProcessingEvent } from "../common/events.ts";
import { createLogger } from "../common/logger.ts";
import { createEndputClient, type EndputClient } from "../common/prisma-clients.ts";
import { createEndputPool, createMongo, createRedis } from "../common/stores.ts";
import { decide } from "../consumer/src/decide.ts";
import { deliveryLogFields, insertEndputRows } from "../consumer/src/records.ts";
import { orderMessageId } from "../gateway/src/services/message-id.ts";
import { fmt, progress } from "./progress.ts";

export const STEP_NAMES = ["decode", "endput", "log claim", "redis count"] as const;
type StepName = (typeof STEP_NAMES)[number];

/**
 * as-shipped: endput as one INSERT … SELECT unnest(…), then the log, then Redis (the consumer overlaps endput and the log, as "parallel").
 * parallel: endput and log writes at once (both idempotent, both before the ack).
 * createMany: endput through Prisma's createMany (skipDuplicates), the consumer's earliest write.
 */
export const VARIANTS = ["as-shipped", "parallel", "createMany", "createMany+parallel"] as const;
export type Variant = (typeof VARIANTS)[number];

export interface StepTiming {
  variant: Variant;
  batchSize: number;
  batches: number;
  /** Mean milliseconds per batch, by step ("endput" and "log claim" overlap in the parallel variants). */
  ms: Record<StepName, number>;
  /** Mean wall milliseconds per batch. */
  totalMs: number;
  /** Messages per second if the batch steps were all there is. */
  ceilingPerSecond: number;
}

/** A batch of `size` happy-path messages, as the broker delivers them, with fresh order ids. */
function encodedBatch(size: number, nextOrderId: () => number): Buffer[] {
  return Array.from({ length: size }, () => {
    const orderId = nextOrderId();
    const system: System = orderId % 2 ? "SYSTEM1" : "SYSTEM2";
    return encodeMessage({
      messageId: orderMessageId(system, orderId),
      source: { system, orderId },
      order: { product: "Docking station", price: "512.34", securityCheck: true },
      requiredAttempts: 1,
      publishedAt: new Date().toISOString(),
    });
  });
}

/** The variant's endput write: the shipped INSERT … SELECT unnest(…), or Prisma's createMany. */
function endputWriter(variant: Variant, endput: Stores["endput"], deliveries: Delivery[]): () => Promise<unknown> {
  if (variant !== "createMany" && variant !== "createMany+parallel") return () => insertEndputRows(endput.pool, deliveries);
  return () =>
    endput.prisma.endputOrder.createMany({
      data: deliveries.map(({ message, attempt }) => ({
        sourceSystem: message.source.system,
        sourceOrderId: message.source.orderId,
        messageId: message.messageId,
        product: message.order.product,
        price: message.order.price,
        securityCheck: message.order.securityCheck,
        attempts: attempt,
      })),
      skipDuplicates: true,
    });
}

/** The SUCCEEDED log document of each delivery, as the consumer claims its attempt with. */
function succeededDocs(config: Config, log: AttemptLog, deliveries: Delivery[], now: Date): LogDocument[] {
  return deliveries.map((d) => ({
    messageId: d.message.messageId,
    status: "SUCCEEDED",
    maxAttempts: config.retry.maxAttempts,
    processedAt: now,
    expiresAt: log.expiryFrom(now),
    retained: false,
    durationMs: 1,
    consumerId: "bench-steps",
    copyId: randomUUID(),
    error: null,
    ...deliveryLogFields(d),
  }));
}

interface Stores {
  config: Config;
  /** The shipped writer's pool, and Prisma for the createMany variants. */
  endput: { pool: pg.Pool; prisma: EndputClient };
  redis: Redis;
  log: AttemptLog;
}

type Timer = <T>(step: StepName, fn: () => Promise<T> | T) => Promise<T>;

/** One batch through the consumer's steps, each timed. */
async function runBatch(stores: Stores, variant: Variant, contents: Buffer[], time: Timer): Promise<void> {
  const { config, endput, redis, log } = stores;
  const headers = { [HEADERS.attempt]: 1, [HEADERS.round]: 0 };
  const outcomes = await time("decode", () =>
    contents.map((c) =>
      decide(c, headers, { maxAttempts: config.retry.maxAttempts, maxMessageBytes: config.consumer.maxMessageBytes }),
    ),
  );
  const deliveries = outcomes.map((o) => {
    if (o.kind !== "SUCCEEDED") throw new Error(`unexpected outcome ${o.kind}`);
    return o.delivery;
  });
  const writeEndput = endputWriter(variant, endput, deliveries);
  const now = new Date();
  const docs = succeededDocs(config, log, deliveries, now);
  if (variant === "parallel" || variant === "createMany+parallel")
    await Promise.all([time("endput", writeEndput), time("log claim", () => log.claim(docs))]);
  else {
    await time("endput", writeEndput);
    await time("log claim", () => log.claim(docs));
  }
  await time("redis count", () =>
    countEventsOnce(
      redis,
      config,
      deliveries.map((d) => ({ event: { ...processingEventOf(d), at: now.toISOString() } })),
    ),
  );
}

/** The SUCCEEDED event of a first attempt. */
function processingEventOf(d: Delivery): Omit<ProcessingEvent, "at"> {
  return {
    messageId: d.message.messageId,
    system: d.message.source.system,
    orderId: d.message.source.orderId,
    attempt: 1,
    round: 0,
    status: "SUCCEEDED",
  };
}

export async function batchSteps(
  config: Config,
  runs: { variant: Variant; size: number }[],
  messagesPerRun: number,
): Promise<StepTiming[]> {
  const logger = createLogger(config, "bench-steps");
  const endput = {
    pool: createEndputPool(config, (err) => progress(`steps: ${err.message}`)),
    prisma: createEndputClient(config),
  };
  const redis = createRedis(config, "bench-steps");
  const mongo = createMongo(config);
  const log = createAttemptLog({ db: mongo.db(config.mongo.database), config, logger });
  await log.ensureIndexes();
  const stores = { config, endput, redis, log };
  let orderId = 0;
  const results: StepTiming[] = [];
  try {
    for (const { variant, size } of runs) {
      const ms: Record<StepName, number> = Object.fromEntries(STEP_NAMES.map((s) => [s, 0])) as Record<StepName, number>;
      const batches = Math.max(3, Math.round(messagesPerRun / size));
      let wall = 0;
      for (let b = 0; b < batches + 1; b++) {
        const warmup = b === 0;
        const contents = encodedBatch(size, () => ++orderId);
        const time: Timer = async (step, fn) => {
          const t = performance.now();
          const r = await fn();
          if (!warmup) ms[step] += performance.now() - t;
          return r;
        };
        const started = performance.now();
        await runBatch(stores, variant, contents, time);
        if (!warmup) wall += performance.now() - started;
      }
      for (const s of STEP_NAMES) ms[s] /= batches;
      const totalMs = wall / batches;
      const timing = { variant, batchSize: size, batches, ms, totalMs, ceilingPerSecond: (size / totalMs) * 1000 };
      results.push(timing);
      progress(
        `steps: ${variant}, batch ${size}: ${STEP_NAMES.map((s) => `${s} ${fmt(ms[s], 1)}`).join(", ")} ms; ` +
          `${fmt(totalMs, 1)} ms per batch (${fmt(timing.ceilingPerSecond)} msg/s ceiling)`,
      );
    }
    return results;
  } finally {
    await endput.pool.end();
    await endput.prisma.$disconnect();
    await redis.quit();
    await mongo.close();
  }
}
