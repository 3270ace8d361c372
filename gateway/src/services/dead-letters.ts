// The dead-letter queue as the schema sees it: its groups and their restore from the queue, a
// peek without consuming, and the
// redrive (dead-letter-redrive.ts) and discard (dead-letter-discard.ts) that walk it
// (dead-letter-walk.ts), writing the entries of dead-letter-records.ts and the events and
// counters of common/events.ts.
import type { Redis } from "ioredis";

import type { Broker } from "../../../common/broker.ts";
import type { Config } from "../../../common/config.ts";
import type { System } from "../../../common/contract.ts";
import { addToGroups, type DeadLetterGroup, readGroups, UNKNOWN_REASON } from "../../../common/dead-letter-groups.ts";
import type { Logger } from "../../../common/logger.ts";
import { using } from "../errors.ts";
import { type DeadLetter, describe, exclusively, groupSystemOf, scan } from "./dead-letter-walk.ts";

export { DISCARD_LISTED, discardDeadLetters, type DiscardResult } from "./dead-letter-discard.ts";
export { redriveDeadLetters, type RedriveResult } from "./dead-letter-redrive.ts";
export type { DeadLetter, RedriveFilter } from "./dead-letter-walk.ts";

export async function peekDeadLetters(deps: {
  broker: Broker;
  redis: Redis;
  config: Config;
  first: number;
}): Promise<DeadLetter[]> {
  const { broker, redis, config, first } = deps;
  return exclusively(redis, config, () =>
    using("rabbitmq", () =>
      broker.withChannel(async (ch) => {
        const out: DeadLetter[] = [];
        await scan(ch, broker.topology.dlq, async (msg) => {
          out.push(describe(msg));
          return out.length < first;
        });
        return out;
      }),
    ),
  );
}

/** The dead-letter groups (common/dead-letter-groups.ts), read from Redis without walking the DLQ. */
export function deadLetterGroups(deps: { redis: Redis; config: Config; system?: System | null }): Promise<DeadLetterGroup[]> {
  return using("redis", () => readGroups(deps.redis, deps.config, deps.system));
}

export interface GroupsRestore {
  /** Dead letters read from the queue. */
  walked: number;
  /** Group members added: dead letters in the queue that no group counted. */
  restored: number;
  /** Whether the walk read every dead letter the queue held when it began (it stops at 100,000). */
  complete: boolean;
}

/**
 * Reads the whole DLQ without consuming it, under the scan lock, and adds to its group every dead
 * letter that none counts: after Redis lost the groups, or some of them. A member already there
 * keeps its deadAt, and one whose dead letter is no longer in the queue stays (an over-count, as
 * before). A copy without x-dead-reason (`unknown`) is left out, as the consumer leaves it out.
 */
export async function restoreDeadLetterGroups(deps: {
  broker: Broker;
  redis: Redis;
  config: Config;
  logger: Logger;
}): Promise<GroupsRestore> {
  const { broker, redis, config, logger } = deps;
  const result = await exclusively(redis, config, () =>
    using("rabbitmq", () =>
      broker.withChannel(async (ch) => {
        const { messageCount } = await ch.checkQueue(broker.topology.dlq);
        const letters: Parameters<typeof addToGroups>[2] = [];
        let walked = 0;
        await scan(
          ch,
          broker.topology.dlq,
          async (msg) => {
            walked++;
            const d = describe(msg);
            const deadAt = new Date(d.deadAt ?? Number.NaN);
            if (d.group !== UNKNOWN_REASON && !Number.isNaN(deadAt.getTime()))
              letters.push({ system: groupSystemOf(d), reason: d.group, messageId: d.messageId, deadAt });
            return true;
          },
          messageCount,
        );
        // Still under the lock: no redrive or discard takes a letter out between the walk and the adds.
        const restored = await using("redis", () => addToGroups(redis, config, letters));
        return { walked, restored, complete: walked >= messageCount };
      }),
    ),
  );
  logger.info(result, "dead-letter groups restored from the queue");
  return result;
}
