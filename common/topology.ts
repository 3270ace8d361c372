// The AMQP topology, declared idempotently by whichever process connects first.
// Delayed retries use TTL + dead-lettering (no broker plugin): a wait queue per
// delay tier whose expired messages dead-letter back into the primary queue.
// The wait queues are quorum queues with at-least-once dead-lettering: a classic
// queue dead-letters at most once, and drops what expires while the primary is
// not there to take it, as during a broker restart.
import type { Channel } from "amqplib";

import type { Config } from "./config.ts";

export interface Topology {
  exchange: string;
  routingKey: string;
  primary: string;
  dlq: string;
  /** Wait queue name for the retry after `attempt` failed attempts. */
  waitQueueFor(failedAttempt: number): string;
  waitQueues: { name: string; delayMs: number }[];
  delayFor(failedAttempt: number): number;
}

/** Named backoff strategies: the delay before the attempt that follows `failedAttempt`. */
export const backoffs = {
  fixed: (_failedAttempt: number, baseMs: number, _maxMs: number) => baseMs,
  exponential: (failedAttempt: number, baseMs: number, maxMs: number) =>
    Math.min(maxMs, baseMs * 2 ** Math.max(0, failedAttempt - 1)),
} as const;

export function makeTopology(config: Config): Topology {
  const p = config.broker.prefix;
  const { delayMs, backoff, maxDelayMs, maxAttempts } = config.retry;
  const delayFor = (failedAttempt: number) => backoffs[backoff](failedAttempt, delayMs, Math.max(maxDelayMs, delayMs));
  const tiers = [...new Set(Array.from({ length: Math.max(1, maxAttempts - 1) }, (_, i) => delayFor(i + 1)))];
  const waitName = (ms: number) => `${p}.orders.retry.${ms}ms`;
  return {
    exchange: `${p}.orders`,
    routingKey: "order",
    primary: `${p}.orders.primary`,
    dlq: `${p}.orders.dlq`,
    waitQueues: tiers.map((ms) => ({ name: waitName(ms), delayMs: ms })),
    waitQueueFor: (failedAttempt) => waitName(delayFor(failedAttempt)),
    delayFor,
  };
}

/** Publishers need the exchange, primary queue and DLQ; only consumers (who retry) declare wait queues. */
export async function assertTopology(
  channel: Channel,
  topology: Topology,
  config: Config,
  opts: { waitQueues: boolean } = { waitQueues: true },
): Promise<void> {
  await channel.assertExchange(topology.exchange, "direct", { durable: true });
  await channel.assertQueue(topology.primary, {
    durable: true,
    arguments: {
      "x-queue-type": config.broker.queueType,
      // A quorum queue drops a message past its delivery limit (20 by default from RabbitMQ 4)
      // unless it has a dead-letter target: send it to the DLQ instead.
      ...(config.broker.queueType === "quorum"
        ? { "x-dead-letter-exchange": "", "x-dead-letter-routing-key": topology.dlq }
        : {}),
    },
  });
  await channel.bindQueue(topology.primary, topology.exchange, topology.routingKey);
  // On a cluster (quorum by default) the DLQ too must outlive the node that leads it.
  await channel.assertQueue(topology.dlq, { durable: true, arguments: { "x-queue-type": config.broker.queueType } });
  for (const wait of opts.waitQueues ? topology.waitQueues : []) {
    await channel.assertQueue(wait.name, {
      durable: true,
      arguments: {
        "x-queue-type": "quorum",
        "x-message-ttl": wait.delayMs,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": topology.primary,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
      },
    });
  }
}
