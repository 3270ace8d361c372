// Redis key names, all under the configured prefix so tests and deployments can share a server.
import type { Config } from "./config.ts";
import type { ProcessingStatus, System } from "./contract.ts";

export const cursorKey = (c: Config, system: System) => `${c.redis.prefix}:cursor:${system}`;
/**
 * Hash per system: `count`, the source rows the broker confirmed at least once, and `highWater`,
 * the highest id ever published. Moved together with the cursor, in one script.
 */
export const publishedKey = (c: Config, system: System) => `${c.redis.prefix}:published:${system}`;
export const publishLockKey = (c: Config, system: System) => `${c.redis.prefix}:publish-lock:${system}`;
/** Held by the gateway that walks the dead-letter queue (a peek, a dry run, a redrive). */
export const deadLetterScanLockKey = (c: Config) => `${c.redis.prefix}:dlq-scan-lock`;
/** Set once the retry copy or dead letter a physical copy (x-copy-id) forwarded was confirmed by the broker. */
export const forwardedKey = (c: Config, copyId: string) => `${c.redis.prefix}:forwarded:${copyId}`;
/** How often a physical copy (x-copy-id) was redelivered to a consumer, where the queue does not count it. */
export const redeliveriesKey = (c: Config, copyId: string) => `${c.redis.prefix}:redeliveries:${copyId}`;
/** Set once an attempt (with its outcome) was added to the counters and announced. */
export const countedKey = (c: Config, messageId: string, round: number, attempt: number, status: string) =>
  `${c.redis.prefix}:counted:${messageId}:${round}:${attempt}:${status}`;
/** Hash of counterField(system, status) -> attempts logged with that outcome. */
export const counterKey = (c: Config) => `${c.redis.prefix}:counters`;
/** A field of counterKey; a message whose system could not be read (rejected) counts under UNKNOWN. */
export const counterField = (system: System | string | null | undefined, status: ProcessingStatus) =>
  `${system ?? "UNKNOWN"}:${status}`;
/** Held by the consumer that sweeps expired attempt logs during one sweep interval. */
export const sweepTurnKey = (c: Config) => `${c.redis.prefix}:log-sweep-turn`;
