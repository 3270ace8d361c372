// The gateway's Prometheus registry: GraphQL metrics from Yoga's plugin, publishing
// counters, and the gauges operators page on (metrics-gauges.ts), read at scrape time.
import type { Redis } from "ioredis";
import { Counter, Registry } from "prom-client";

import type { Broker } from "../../common/broker.ts";
import type { Config } from "../../common/config.ts";
import { SYSTEMS } from "../../common/contract.ts";
import type { SourceClients } from "../../common/prisma-clients.ts";
import { collectProcessMetrics } from "../../common/process-metrics.ts";
import { registerDeadLetterGauges, registerPendingRowsGauge, registerQueueGauges } from "./metrics-gauges.ts";

export type GatewayMetrics = ReturnType<typeof createGatewayMetrics>;

export function createGatewayMetrics(deps: { broker: Broker; redis: Redis; config: Config; sources: SourceClients }) {
  const { broker, redis, config, sources } = deps;
  const registry = new Registry();
  collectProcessMetrics(registry, "tentativa_gateway_");
  const published = new Counter({
    name: "tentativa_published_total",
    help: "Messages published to the primary queue and confirmed by the broker, by source system",
    labelNames: ["system"] as const,
    registers: [registry],
  });
  const publishBatches = new Counter({
    name: "tentativa_publish_batches_total",
    help: "Confirmed publish batches, by source system",
    labelNames: ["system"] as const,
    registers: [registry],
  });
  const connectionsRefused = new Counter({
    name: "tentativa_gateway_connections_refused_total",
    help: "Connections refused (TOO_MANY_CONNECTIONS), by the limit they were over: client (GATEWAY_CLIENT_CONNECTIONS) or total (GATEWAY_MAX_CONNECTIONS)",
    labelNames: ["limit"] as const,
    registers: [registry],
  });
  for (const limit of ["client", "total"]) connectionsRefused.inc({ limit }, 0);
  for (const system of SYSTEMS) {
    published.inc({ system }, 0);
    publishBatches.inc({ system }, 0);
  }

  registerQueueGauges(registry, broker);
  registerPendingRowsGauge(registry, { redis, config, sources });
  registerDeadLetterGauges(registry, redis, config);
  return { registry, published, publishBatches, connectionsRefused };
}
