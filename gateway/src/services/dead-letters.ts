// The dead-letter queue as the schema sees it: its groups and their restore from the queue, a
// peek without consuming, and the
// redrive (dead-letter-redrive.ts) and discard (dead-letter-discard.ts) that walk it
// (dead-letter-walk.ts), writing the entries of dead-letter-records.ts and the events and
// counters of common/events.ts.
import type { Redis } from "ioredis";

import { type AttemptLog, eachLimited, type LogDocument, PER_MESSAGE_WIDTH } from "../../../common/attempt-log.ts";
import type { Broker } from "../../../common/broker.ts";
import type { Config } from "../../../common/config.ts";
import type { System } from "../../../common/contract.ts";
import {
  addToGroups,
  type DeadLetterGroup,
  type GroupMember,
  readGroups,
  readMembers,
  removeFromGroups,
  UNKNOWN_REASON,
} from "../../../common/dead-letter-groups.ts";
import type { Logger } from "../../../common/logger.ts";
import { using } from "../errors.ts";
import { type DeadLetter, describe, exclusively, groupMemberOf, scan } from "./dead-letter-walk.ts";

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
  /** Group members taken out: their dead letter was not in the queue, and its history says it left it. */
  removed: number;
  /** Whether the walk read every dead letter the queue held when it began (it stops at 100,000). */
  complete: boolean;
}

/**
 * Whether a message's history says its latest dead letter left the DLQ: the latest round was
 * discarded, or redriven and not dead-lettered again (yet). A message with no history is kept.
 */
function leftTheQueue(history: LogDocument[]): boolean {
  if (history.length === 0) return false;
  const round = Math.max(...history.map((d) => d.round));
  const latest = history.filter((d) => d.round === round);
  if (latest.some((d) => d.status === "DISCARDED")) return true;
  return !latest.some((d) => d.status === "DEAD_LETTERED" || d.status === "REJECTED");
}

/**
 * Reconciles the dead-letter groups with the DLQ, under the scan lock: reads the whole queue
 * without consuming it and adds to its group every dead letter none counts (after Redis lost the
 * groups, or some of them; a member already there keeps its deadAt). When the walk read the whole
 * queue it also takes out the members whose dead letter it did not see and whose history says it
 * left the queue (a gateway that died between a redrive's or a discard's ack and the removal); a
 * member not seen for another reason (its dead letter still on its way to the queue) stays. A copy
 * without x-dead-reason (`unknown`) is left out, as the consumer leaves it out.
 */
export async function restoreDeadLetterGroups(deps: {
  broker: Broker;
  redis: Redis;
  config: Config;
  log: AttemptLog;
  logger: Logger;
}): Promise<GroupsRestore> {
  const { broker, redis, config, log, logger } = deps;
  const result = await exclusively(redis, config, () =>
    using("rabbitmq", () =>
      broker.withChannel(async (ch) => {
        const { messageCount } = await ch.checkQueue(broker.topology.dlq);
        const letters: GroupMember[] = [];
        let walked = 0;
        await scan(
          ch,
          broker.topology.dlq,
          async (msg) => {
            walked++;
            const member = groupMemberOf(describe(msg));
            if (member.reason !== UNKNOWN_REASON && member.deadAt) letters.push({ ...member, deadAt: member.deadAt });
            return true;
          },
          messageCount,
        );
        const complete = walked >= messageCount;
        // Still under the lock: no redrive or discard takes a letter out between the walk and these writes.
        const restored = await using("redis", () => addToGroups(redis, config, letters));
        if (!complete) return { walked, restored, removed: 0, complete };
        const memberOf = (m: GroupMember) => `${m.system}:${m.reason}:${m.messageId}`;
        const seen = new Set(letters.map(memberOf));
        const unseen = (await using("redis", () => readMembers(redis, config))).filter((m) => !seen.has(memberOf(m)));
        const gone = await eachLimited(unseen, PER_MESSAGE_WIDTH, async (m) =>
          leftTheQueue(await using("mongodb", () => log.history(m.messageId))) ? m : null,
        );
        // Each only as long as its score is the deadAt read here: a message dead-lettered again since stays.
        const stale = gone.filter((m) => m !== null);
        await using("redis", () => removeFromGroups(redis, config, stale));
        return { walked, restored, removed: stale.length, complete };
      }),
    ),
  );
  logger.info(result, "dead-letter groups reconciled with the queue");
  return result;
}
