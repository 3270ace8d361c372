// Redis key names, all under the configured prefix so tests and deployments can share a server.
import type { Config } from "./config.ts";
import type { System } from "./contract.ts";

export const cursorKey = (c: Config, system: System) => `${c.redis.prefix}:cursor:${system}`;
export const publishLockKey = (c: Config, system: System) => `${c.redis.prefix}:publish-lock:${system}`;
export const doneKey = (c: Config, messageId: string, round: number, attempt: number) =>
  `${c.redis.prefix}:done:${messageId}:${round}:${attempt}`;
/** Set once the retry copy or dead letter a physical copy (x-copy-id) forwarded was confirmed by the broker. */
export const forwardedKey = (c: Config, copyId: string) => `${c.redis.prefix}:forwarded:${copyId}`;
/** Hash of `${system}:${status}` -> attempts logged with that outcome. */
export const counterKey = (c: Config) => `${c.redis.prefix}:counters`;
/** Held by the consumer that sweeps expired attempt logs during one sweep interval. */
export const sweepTurnKey = (c: Config) => `${c.redis.prefix}:log-sweep-turn`;
