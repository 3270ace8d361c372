// Redis key names, all under the configured prefix so tests and deployments can share a server.
import type { Config } from "./config.ts";
import type { System } from "./contract.ts";

export const cursorKey = (c: Config, system: System) => `${c.redis.prefix}:cursor:${system}`;
export const publishLockKey = (c: Config, system: System) => `${c.redis.prefix}:publish-lock:${system}`;
/** Set once an attempt (with its outcome) was added to the counters and announced. */
export const countedKey = (c: Config, messageId: string, round: number, attempt: number, status: string) =>
  `${c.redis.prefix}:counted:${messageId}:${round}:${attempt}:${status}`;
/** Hash of `${system}:${status}` -> attempts logged with that outcome. */
export const counterKey = (c: Config) => `${c.redis.prefix}:counters`;
/** Held by the consumer that sweeps expired attempt logs during one sweep interval. */
export const sweepTurnKey = (c: Config) => `${c.redis.prefix}:log-sweep-turn`;
