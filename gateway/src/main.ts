// Composition root of the gateway process.
import { once } from "node:events";

import { createAttemptLog } from "../../common/attempt-log.ts";
import { createBroker } from "../../common/broker.ts";
import { type Config, ConfigError } from "../../common/config.ts";
import { errorMessage } from "../../common/errors.ts";
import { createReleasers, onShutdownSignal } from "../../common/lifecycle.ts";
import { createLogger } from "../../common/logger.ts";
import { setCpuPriority } from "../../common/priority.ts";
import { createEndputClient, createSourceClients } from "../../common/prisma-clients.ts";
import { runMain } from "../../common/run-main.ts";
import { createMongo, createRedis } from "../../common/stores.ts";
import { startTracing } from "../../common/tracing.ts";
import { createGateway } from "./app.ts";
import { anonymousExposure, isLoopback } from "./exposure.ts";
import { createGatewayMetrics } from "./metrics.ts";
import { createEventsPubSub } from "./pubsub.ts";

async function main(config: Config): Promise<void> {
  const exposure = anonymousExposure(config.gateway);
  if (exposure) throw new ConfigError([exposure]);
  const logger = createLogger(config, "gateway");
  setCpuPriority(config.gateway.nice, logger);
  if (!config.gateway.token && !isLoopback(config.gateway.host))
    logger.warn({ host: config.gateway.host }, "GATEWAY_ALLOW_ANONYMOUS=true: anyone who reaches the gateway can run mutations");
  const releasers = createReleasers(logger);
  // Started first, so it is released last and flushes the spans of the final requests.
  const tracing = await startTracing(config, "gateway", logger);
  releasers.add("tracing", () => tracing.shutdown());

  const sources = createSourceClients(config);
  releasers.add("source postgresql", () => Promise.all([sources.SYSTEM1.$disconnect(), sources.SYSTEM2.$disconnect()]));
  const endput = createEndputClient(config);
  releasers.add("endput postgresql", () => endput.$disconnect());
  const redis = createRedis(config, "gateway");
  releasers.add("redis", () => redis.quit());
  const redisSub = createRedis(config, "gateway-subscriber");
  releasers.add("redis subscriber", () => redisSub.quit());
  const mongo = createMongo(config);
  releasers.add("mongodb", () => mongo.close());
  const broker = createBroker({ config, logger, name: "gateway" });
  releasers.add("rabbitmq", () => broker.close());

  const log = createAttemptLog({ db: mongo.db(config.mongo.database), config, logger });
  await log.ensureIndexes().catch((err) => logger.warn({ err: errorMessage(err) }, "attempt log indexes not ensured yet"));
  const pubsub = createEventsPubSub(redis, redisSub, config.gateway.subscriptionBuffer);

  const metrics = createGatewayMetrics({ broker, redis, config, sources });
  const gateway = createGateway({ config, logger, sources, endput, redis, broker, log, pubsub, metrics, tracing });
  gateway.server.listen(config.gateway.port, config.gateway.host);
  await once(gateway.server, "listening");
  releasers.add("http server", () => gateway.close());
  const shown = config.gateway.host === "0.0.0.0" ? "localhost" : config.gateway.host;
  logger.info({ url: `http://${shown}:${config.gateway.port}/graphql` }, "gateway ready: GraphiQL and the GraphQL endpoint");

  onShutdownSignal(logger, async () => {
    await releasers.releaseAll();
    process.exit(0);
  });
}

runMain("gateway", main);
