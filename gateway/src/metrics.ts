// The gateway's Prometheus registry: GraphQL metrics from Yoga's plugin, publishing
// counters, and what operators page on, read at scrape time: queue depths and the primary
// queue's consumers from the broker, pending source rows per system, and the dead-letter
// groups. Each reading is cached briefly and bounded in time, so scrapes from several
// Prometheus servers cost the stores one reading per interval, and a store that hangs
// leaves its gauges unset instead of hanging the scrape.
import type { Redis } from "ioredis";
import { collectDefaultMetrics, Counter, Gauge, Registry } from "prom-client";

import type { Broker } from "../../common/broker.ts";
import type { Config } from "../../common/config.ts";
import { SYSTEMS } from "../../common/contract.ts";
import { readGroups } from "../../common/dead-letter-groups.ts";
import type { SourceClients } from "../../common/stores.ts";
import { createCursors } from "./services/cursors.ts";

export type GatewayMetrics = ReturnType<typeof createGatewayMetrics>;

/** How long a reading serves scrapes. */
const READING_TTL_MS = 5_000;
/** How long a scrape waits for a reading. */
const READING_TIMEOUT_MS = 2_000;

/** The last reading while it is fresh; one reading at a time; undefined when it failed or took too long. */
export function cachedReading<T>(read: () => Promise<T>, ttlMs = READING_TTL_MS, timeoutMs = READING_TIMEOUT_MS) {
  let last: { at: number; value: T } | undefined;
  let inFlight: Promise<T | undefined> | undefined;
  return async (): Promise<T | undefined> => {
    if (last && Date.now() - last.at < ttlMs) return last.value;
    inFlight ??= read()
      .then((value) => {
        last = { at: Date.now(), value };
        return value;
      })
      .catch(() => undefined)
      .finally(() => (inFlight = undefined));
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<undefined>((r) => {
      timer = setTimeout(() => r(undefined), timeoutMs);
    });
    try {
      return await Promise.race([inFlight, timeout]);
    } finally {
      clearTimeout(timer);
    }
  };
}

export function createGatewayMetrics(deps: { broker: Broker; redis: Redis; config: Config; sources: SourceClients }) {
  const { broker, redis, config, sources } = deps;
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
  for (const system of SYSTEMS) {
    published.inc({ system }, 0);
    publishBatches.inc({ system }, 0);
  }

  const queues = cachedReading(async () => {
    const topo = broker.topology;
    const out: { name: string; messages: number; consumers: number }[] = [];
    for (const name of [topo.primary, ...topo.waitQueues.map((w) => w.name), topo.dlq]) {
      // A missing queue closes the channel it was asked on, so each check gets its own.
      const q = await broker.withChannel((ch) => ch.checkQueue(name)).catch(() => undefined);
      if (q) out.push({ name, messages: q.messageCount, consumers: q.consumerCount });
    }
    return out;
  });
  new Gauge({
    name: "tentativa_queue_messages",
    help: "Messages ready in each queue of the topology",
    labelNames: ["queue"] as const,
    registers: [registry],
    async collect() {
      this.reset();
      for (const q of (await queues()) ?? []) this.set({ queue: q.name }, q.messages);
    },
  });
  new Gauge({
    name: "tentativa_primary_queue_consumers",
    help: "Consumers attached to the primary queue (absent when the broker did not answer)",
    registers: [registry],
    async collect() {
      this.reset();
      const primary = (await queues())?.find((q) => q.name === broker.topology.primary);
      if (primary) this.set(primary.consumers);
    },
  });

  // The highest source id minus the cursor: one indexed max() and one GET per system. Ids a
  // rolled-back transaction drew are counted as pending, so it is an upper bound.
  const cursors = createCursors(redis, config);
  const pending = cachedReading(() =>
    Promise.all(
      SYSTEMS.map(async (system) => {
        const [max, cursor] = await Promise.all([sources[system].order.aggregate({ _max: { id: true } }), cursors.get(system)]);
        return { system, rows: Math.max(0, (max._max.id ?? 0) - cursor) };
      }),
    ),
  );
  new Gauge({
    name: "tentativa_pending_rows",
    help: "Source rows past the publish cursor, by system (highest id minus the cursor)",
    labelNames: ["system"] as const,
    registers: [registry],
    async collect() {
      this.reset();
      for (const p of (await pending()) ?? []) this.set({ system: p.system }, p.rows);
    },
  });

  const groups = cachedReading(() => readGroups(redis, config));
  new Gauge({
    name: "tentativa_dead_letters",
    help: "Dead letters in the dead-letter queue, by system (UNKNOWN: unreadable) and reason, from the dead-letter groups",
    labelNames: ["system", "reason"] as const,
    registers: [registry],
    async collect() {
      this.reset();
      for (const g of (await groups()) ?? []) this.set({ system: g.system ?? "UNKNOWN", reason: g.reason }, g.count);
    },
  });
  new Gauge({
    name: "tentativa_dead_letter_oldest_age_seconds",
    help: "Age of the oldest dead letter in the dead-letter queue (0 when it is empty)",
    registers: [registry],
    async collect() {
      this.reset();
      const gs = await groups();
      if (!gs) return;
      const oldest = Math.min(...gs.map((g) => g.oldestDeadAt.getTime()));
      this.set(gs.length === 0 ? 0 : Math.max(0, (Date.now() - oldest) / 1000));
    },
  });
  return { registry, published, publishBatches };
}
