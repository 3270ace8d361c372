import { collectDefaultMetrics, Counter, Histogram, Registry } from "prom-client";

export type ConsumerMetrics = ReturnType<typeof createConsumerMetrics>;

export function createConsumerMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "tentativa_consumer_" });
  return {
    registry,
    processed: new Counter({
      name: "tentativa_messages_processed_total",
      help: "Attempts processed, by outcome and source system",
      labelNames: ["status", "system"] as const,
      registers: [registry],
    }),
    attempts: new Histogram({
      name: "tentativa_attempts_to_success",
      help: "Attempts a message needed to succeed",
      buckets: [1, 2, 3, 4, 5, 6, 8, 10],
      registers: [registry],
    }),
    batchSize: new Histogram({
      name: "tentativa_batch_size",
      help: "Deliveries per processed batch",
      buckets: [1, 5, 10, 25, 50, 100, 250, 500, 1000],
      registers: [registry],
    }),
    batchSeconds: new Histogram({
      name: "tentativa_batch_duration_seconds",
      help: "Time from a batch's start to its ack",
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5],
      registers: [registry],
    }),
    duplicates: new Counter({
      name: "tentativa_duplicate_deliveries_total",
      help: "Deliveries of attempts that were already handled (acked without side effects)",
      registers: [registry],
    }),
    resumed: new Counter({
      name: "tentativa_resumed_deliveries_total",
      help: "Redelivered copies that owned their attempt and acted on it (a batch a crash cut short, finished)",
      registers: [registry],
    }),
    storeErrors: new Counter({
      name: "tentativa_store_errors_total",
      help: "Failed store writes that held a batch, by step",
      labelNames: ["step"] as const,
      registers: [registry],
    }),
  };
}
