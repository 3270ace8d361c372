// The gateway's Prometheus registry: GraphQL metrics from Yoga's plugin, plus
// publishing counters and queue depths read from the broker at scrape time.
import { collectDefaultMetrics, Counter, Gauge, Registry } from "prom-client";

import type { Broker } from "../../common/broker.ts";

export type GatewayMetrics = ReturnType<typeof createGatewayMetrics>;

export function createGatewayMetrics(broker: Broker) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "tentativa_gateway_" });
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
  new Gauge({
    name: "tentativa_queue_messages",
    help: "Messages ready in each queue of the topology",
    labelNames: ["queue"] as const,
    registers: [registry],
    async collect() {
      const topo = broker.topology;
      for (const name of [topo.primary, ...topo.waitQueues.map((w) => w.name), topo.dlq]) {
        const q = await broker.withChannel((ch) => ch.checkQueue(name)).catch(() => undefined);
        if (q) this.set({ queue: name }, q.messageCount);
      }
    },
  });
  return { registry, published, publishBatches };
}
