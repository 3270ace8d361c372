// Composition root of the consumer process.
import { once } from "node:events";

import { createAttemptLog } from "../../common/attempt-log.ts";
import { createBroker } from "../../common/broker.ts";
import type { Config } from "../../common/config.ts";
import { errorMessage } from "../../common/errors.ts";
import { createHealthServer } from "../../common/http-health.ts";
import { sweepTurnKey } from "../../common/keys.ts";
import { createReleasers, onShutdownSignal } from "../../common/lifecycle.ts";
import { createLogger } from "../../common/logger.ts";
import { setCpuPriority } from "../../common/priority.ts";
import { runMain } from "../../common/run-main.ts";
import { createEndputPool, createMongo, createRedis } from "../../common/stores.ts";
import { startTracing } from "../../common/tracing.ts";
import { createConsumer } from "./consumer.ts";
import { createConsumerMetrics } from "./metrics.ts";

async function main(config: Config): Promise<void> {
  const logger = createLogger(config, "consumer");
  setCpuPriority(config.consumer.nice, logger);
  const releasers = createReleasers(logger);
  // Started first, so it is released last and flushes the spans of the final batches.
  const tracing = await startTracing(config, "consumer", logger);
  releasers.add("tracing", () => tracing.shutdown());

  const endput = createEndputPool(config, (err) =>
    logger.warn({ err: errorMessage(err) }, "an idle endput connection failed; the pool opens another when needed"),
  );
  releasers.add("endput postgresql", () => endput.end());
  const redis = createRedis(config, "consumer");
  releasers.add("redis", () => redis.quit());
  const mongo = createMongo(config);
  releasers.add("mongodb", () => mongo.close());
  const broker = createBroker({ config, logger, name: "consumer", waitQueues: true });
  releasers.add("rabbitmq", () => broker.close());

  const log = createAttemptLog({ db: mongo.db(config.mongo.database), config, logger });
  const retention = await log.ensureIndexes();
  logger.info({ retention, ttlSeconds: config.mongo.ttlSeconds }, "attempt log ready");
  // One sweep per interval across all consumers: the first to take the turn sweeps.
  const sweepTurn = async (holdMs: number) =>
    (await redis.set(sweepTurnKey(config), config.consumer.id, "PX", Math.max(1000, holdMs - 500), "NX")) === "OK";
  releasers.add("log sweeper", log.startSweeper(sweepTurn));

  const metrics = createConsumerMetrics();
  const consumer = createConsumer({ config, logger, broker, endput, log, redis, metrics, tracing });

  const health = createHealthServer({
    registry: metrics.registry,
    checks: [
      {
        name: "rabbitmq",
        check: async () => {
          if (!consumer.ready()) throw new Error("not consuming");
        },
      },
      { name: "postgresql", check: () => endput.query("select 1") },
      { name: "redis", check: () => redis.ping() },
      { name: "mongodb", check: () => mongo.db(config.mongo.database).command({ ping: 1 }) },
    ],
  });
  health.listen(config.consumer.port, "0.0.0.0");
  await once(health, "listening");
  releasers.add("health server", () => new Promise((r) => health.close(r)));
  logger.info({ port: config.consumer.port }, "health and metrics on /healthz, /readyz, /metrics");

  consumer.start();
  releasers.add("consumer (finish in-flight batch)", () => consumer.stop());

  onShutdownSignal(logger, async () => {
    await releasers.releaseAll();
    logger.info(consumer.stats(), "consumer stopped");
    process.exit(0);
  });
}

runMain("consumer", main);
