// Pipeline statistics: queue depths from the broker, attempt counts from the
// consumers' Redis counters, and a per-system reconciliation of source rows,
// rows published, sink and dead letters.
import type { Redis } from "ioredis";

import type { Broker } from "../../../common/broker.ts";
import type { Config } from "../../../common/config.ts";
import { PROCESSING_STATUSES, type ProcessingStatus, type System, SYSTEMS } from "../../../common/contract.ts";
import { counterField, counterKey } from "../../../common/keys.ts";
import type { EndputClient, SourceClients } from "../../../common/prisma-clients.ts";
import { using } from "../errors.ts";
import { createCursors } from "./cursors.ts";

export interface QueueStats {
  name: string;
  messages: number;
  consumers: number;
}

export interface SystemStats {
  system: System;
  sourceRows: number;
  published: number;
  succeeded: number;
  deadLettered: number;
  inFlight: number;
  endputRows: number;
  attempts: { status: ProcessingStatus; count: number }[];
}

export interface PipelineStats {
  queues: QueueStats[];
  systems: SystemStats[];
  attempts: { status: ProcessingStatus; count: number }[];
}

export async function pipelineStats(deps: {
  broker: Broker;
  redis: Redis;
  config: Config;
  sources: SourceClients;
  endput: EndputClient;
}): Promise<PipelineStats> {
  const { broker, redis, config, sources, endput } = deps;
  const topo = broker.topology;
  const names = [topo.primary, ...topo.waitQueues.map((w) => w.name), topo.dlq];
  if (!broker.isConnected()) await using("rabbitmq", () => broker.withChannel(async () => undefined));
  const queues: QueueStats[] = [];
  for (const name of names) {
    // A missing queue closes the channel it was asked on, so each check gets its own.
    const q = await broker.withChannel((ch) => ch.checkQueue(name)).catch(() => undefined);
    if (q) queues.push({ name, messages: q.messageCount, consumers: q.consumerCount });
  }
  const counters = await using("redis", () => redis.hgetall(counterKey(config)));
  const count = (system: string, status: ProcessingStatus) => Number(counters[counterField(system, status)] ?? 0);
  const cursors = createCursors(redis, config);
  const endputBySystem = await using("postgresql", () =>
    endput.endputOrder.groupBy({ by: ["sourceSystem"], _count: { _all: true } }),
  );

  const systems = await Promise.all(
    SYSTEMS.map(async (system): Promise<SystemStats> => {
      const [sourceRows, mark, cursor] = await Promise.all([
        using("postgresql", () => sources[system].order.count()),
        cursors.published(system),
        cursors.get(system),
      ]);
      // Without a mark (a cursor from before the count existed) the rows up to the cursor were published.
      const published =
        mark?.count ??
        (cursor === 0 ? 0 : await using("postgresql", () => sources[system].order.count({ where: { id: { lte: cursor } } })));
      const endputRows = endputBySystem.find((r) => r.sourceSystem === system)?._count._all ?? 0;
      const discarded = count(system, "DISCARDED");
      const deadLettered = Math.max(0, count(system, "DEAD_LETTERED") - count(system, "REDRIVEN") - discarded);
      return {
        system,
        sourceRows,
        published,
        succeeded: endputRows,
        deadLettered,
        // Published but neither in the sink, dead-lettered nor discarded: queued, waiting to retry, or being processed.
        inFlight: Math.max(0, published - endputRows - deadLettered - discarded),
        endputRows,
        attempts: PROCESSING_STATUSES.map((status) => ({ status, count: count(system, status) })),
      };
    }),
  );
  const attempts = PROCESSING_STATUSES.map((status) => ({
    status,
    count: [...SYSTEMS, "UNKNOWN"].reduce((n, s) => n + count(s, status), 0),
  }));
  return { queues, systems, attempts };
}
