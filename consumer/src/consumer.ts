// The consumer: takes deliveries from the primary queue in micro-batches and, per batch, makes
// every side effect durable before acknowledging anything. Wiring only; each unit states the
// ordering it enforces:
//
//   delivery-pump.ts    channel, prefetch, batching, concurrency; commits batches in delivery order
//   batch-processor.ts  claims (attempt log) and endput rows, then counters and events, once each
//   forwarder.ts        retry copies and dead letters, confirmed, then the ack, in one transaction
//   mappers.ts          delivery → log document, → event, → dead-letter group (pure)
//   store-retry.ts      a store that is down holds the batch; store-errors.ts: one it refuses rejects one message
//   redeliveries.ts     a copy that keeps coming back is rejected past CONSUMER_MAX_REDELIVERIES
import type { Redis } from "ioredis";
import type pg from "pg";

import type { AttemptLog } from "../../common/attempt-log.ts";
import type { Broker } from "../../common/broker.ts";
import type { Config } from "../../common/config.ts";
import { copyIdOf } from "../../common/contract.ts";
import type { Logger } from "../../common/logger.ts";
import { noTracing, type Tracing } from "../../common/tracing.ts";
import { createBatchProcessor, type ProcessedBatch } from "./batch-processor.ts";
import type { decide } from "./decide.ts";
import { createDeliveryPump, type DeliveryPump } from "./delivery-pump.ts";
import { createForwarder } from "./forwarder.ts";
import type { ConsumerMetrics } from "./metrics.ts";
import { createRedeliveryCounter } from "./redeliveries.ts";

export type Consumer = DeliveryPump;

export function createConsumer(deps: {
  config: Config;
  logger: Logger;
  broker: Broker;
  endput: pg.Pool;
  log: AttemptLog;
  redis: Redis;
  metrics?: ConsumerMetrics;
  /** What to do with one delivery (decide.ts); tests give one that fails on a chosen message. */
  decide?: typeof decide;
  tracing?: Tracing;
}): Consumer {
  const { config, logger, broker, endput, log, redis, metrics, tracing = noTracing } = deps;
  const redeliveries = createRedeliveryCounter(redis, config);
  const forwarder = createForwarder({ config, broker, redis, logger, tracing });
  const processor = createBatchProcessor({
    config,
    logger,
    endput,
    log,
    redis,
    redeliveries,
    metrics,
    tracing,
    decide: deps.decide,
  });
  return createDeliveryPump<ProcessedBatch>({
    config,
    logger,
    broker,
    metrics,
    tracing,
    handler: {
      process: (batch, alive) => processor.process(batch, alive),
      async commit(ch, batch, { forwards, requeue, record }, alive) {
        const back = new Set(requeue);
        await forwarder.commit(
          ch,
          forwards,
          batch.findLast((m) => !back.has(m)),
          alive,
          requeue,
        );
        record();
      },
      // Each copy's failure counts towards the redelivery bound.
      failed: (batch) => redeliveries.failed(batch.map((m) => copyIdOf(m.content, m.properties.headers))),
    },
  });
}
