// The gauges operators page on, read at scrape time (each through a cachedReading): queue depths
// and the primary queue's consumers from the broker, pending source rows per system, and the
// dead-letter groups.
import type { Redis } from "ioredis";
import { Gauge, type Registry } from "prom-client";

import type { Broker } from "../../common/broker.ts";
import { cachedReading } from "../../common/cached-reading.ts";
import type { Config } from "../../common/config.ts";
import { SYSTEMS } from "../../common/contract.ts";
import { readGroups } from "../../common/dead-letter-groups.ts";
import type { SourceClients } from "../../common/prisma-clients.ts";
import { createCursors } from "./services/cursors.ts";

export function registerQueueGauges(registry: Registry, broker: Broker): void {
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
}

export function registerPendingRowsGauge(
  registry: Registry,
  deps: { redis: Redis; config: Config; sources: SourceClients },
): void {
  const { redis, config, sources } = deps;
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
}

export function registerDeadLetterGauges(registry: Registry, redis: Redis, config: Config): void {
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
}
