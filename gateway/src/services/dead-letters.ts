// The dead-letter queue as the schema sees it: its groups, a peek without consuming, and the
// redrive (dead-letter-redrive.ts) and discard (dead-letter-discard.ts) that walk it
// (dead-letter-walk.ts), writing the entries of dead-letter-records.ts and the events and
// counters of common/events.ts.
import type { Redis } from "ioredis";

import type { Broker } from "../../../common/broker.ts";
import type { Config } from "../../../common/config.ts";
import type { System } from "../../../common/contract.ts";
import { type DeadLetterGroup, readGroups } from "../../../common/dead-letter-groups.ts";
import { using } from "../errors.ts";
import { type DeadLetter, describe, exclusively, scan } from "./dead-letter-walk.ts";

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
