import { Counter, Gauge, Histogram, Registry } from "prom-client";

import { SYSTEMS } from "../../common/contract.ts";
import { collectProcessMetrics } from "../../common/process-metrics.ts";

export type ConsumerMetrics = ReturnType<typeof createConsumerMetrics>;

/** The outcomes the consumer counts, and the steps whose store writes can hold a batch: exported at 0 from the start. */
const OUTCOMES = ["SUCCEEDED", "RETRY_SCHEDULED", "DEAD_LETTERED", "REJECTED"] as const;
const STORE_STEPS = ["mongo", "endput", "redis"] as const;

export function createConsumerMetrics() {
  const registry = new Registry();
  collectProcessMetrics(registry, "tentativa_consumer_");
  let oldestUnackedAt: () => number | null = () => null;
  new Gauge({
    name: "tentativa_consumer_oldest_unacked_seconds",
    help: "Age of the oldest delivery this consumer holds unacked (0 when it holds none)",
    registers: [registry],
    collect() {
      const at = oldestUnackedAt();
      this.set(at === null ? 0 : Math.max(0, (Date.now() - at) / 1000));
    },
  });
  const metrics = {
    registry,
    /** Where the unacked gauge reads the oldest delivery's arrival (the consumer sets it). */
    watchUnacked(fn: () => number | null) {
      oldestUnackedAt = fn;
    },
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
  // Labelled series exist before their first event, so rate() and the alerts see them from the start.
  for (const status of OUTCOMES)
    for (const system of [...SYSTEMS, "UNKNOWN"]) {
      if (status === "REJECTED" ? system === "UNKNOWN" : system !== "UNKNOWN") metrics.processed.inc({ status, system }, 0);
    }
  for (const step of STORE_STEPS) metrics.storeErrors.inc({ step }, 0);
  return metrics;
}
