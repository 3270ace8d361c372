// The Redis cursor per system (the highest source id whose message the broker
// confirmed), the count of rows published, and the per-system publish lock that
// serialises publishers.
import type { Redis } from "ioredis";

import type { Config } from "../../../common/config.ts";
import type { System } from "../../../common/contract.ts";
import { cursorKey, publishedKey, publishLockKey } from "../../../common/keys.ts";
import { DomainError, using } from "../errors.ts";
import { tryLock } from "./redis-lock.ts";

// Only the holder of the lock may move the cursor or release the lock.
const SET_IF_HOLDER = `if redis.call('get', KEYS[1]) == ARGV[1] then redis.call('set', KEYS[2], ARGV[2]) return 1 else return 0 end`;
// The cursor, the published count and the high-water mark move in one step: a crash cannot
// leave a cursor past rows that were never counted, or a count for rows the cursor did not pass.
const ADVANCE_IF_HOLDER = `if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('set', KEYS[2], ARGV[2])
redis.call('hincrby', KEYS[3], 'count', ARGV[3])
if tonumber(ARGV[2]) > tonumber(redis.call('hget', KEYS[3], 'highWater') or '0') then
  redis.call('hset', KEYS[3], 'highWater', ARGV[2])
end
return 1`;
const INIT_IF_HOLDER = `if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('hsetnx', KEYS[2], 'count', ARGV[2])
redis.call('hsetnx', KEYS[2], 'highWater', ARGV[3])
return 1`;

/** What was published: rows confirmed at least once, and the highest id ever published. */
export interface PublishedMark {
  count: number;
  highWater: number;
}

export interface PublishLock {
  /** Sets the cursor if this lock is still held; throws if it was lost. */
  setCursor(value: number): Promise<void>;
  /** Moves the cursor to `value` and counts `fresh` rows as published, in one step; throws if the lock was lost. */
  advance(value: number, fresh: number): Promise<void>;
  /** The published mark; null where it was never recorded (a cursor older than the count). */
  mark(): Promise<PublishedMark | null>;
  /** Records the mark where there is none yet. */
  initMark(mark: PublishedMark): Promise<void>;
  release(): Promise<void>;
}

export function createCursors(redis: Redis, config: Config) {
  async function get(system: System): Promise<number> {
    const raw = await using("redis", () => redis.get(cursorKey(config, system)));
    const n = raw === null ? 0 : Number(raw);
    return Number.isSafeInteger(n) && n >= 0 ? n : 0;
  }

  async function published(system: System): Promise<PublishedMark | null> {
    const raw = await using("redis", () => redis.hgetall(publishedKey(config, system)));
    if (raw.count === undefined) return null;
    return { count: Number(raw.count) || 0, highWater: Number(raw.highWater) || 0 };
  }

  async function lock(system: System): Promise<PublishLock> {
    const held = await tryLock(redis, publishLockKey(config, system), config.gateway.publishLockTtlMs);
    if (!held) {
      throw new DomainError(
        "PUBLISH_IN_PROGRESS",
        `${system} is already being published or reset by another request; try again when it finishes`,
        { system },
      );
    }
    const { key, token } = held;
    const lost = () =>
      new DomainError("PUBLISH_IN_PROGRESS", `lost the ${system} publish lock; another publisher took over`, { system });
    return {
      async setCursor(value) {
        const ok = await using("redis", () => redis.eval(SET_IF_HOLDER, 2, key, cursorKey(config, system), token, String(value)));
        if (ok !== 1) throw lost();
      },
      async advance(value, fresh) {
        const ok = await using("redis", () =>
          redis.eval(
            ADVANCE_IF_HOLDER,
            3,
            key,
            cursorKey(config, system),
            publishedKey(config, system),
            token,
            String(value),
            String(fresh),
          ),
        );
        if (ok !== 1) throw lost();
      },
      mark: () => published(system),
      async initMark(mark) {
        const ok = await using("redis", () =>
          redis.eval(INIT_IF_HOLDER, 2, key, publishedKey(config, system), token, String(mark.count), String(mark.highWater)),
        );
        if (ok !== 1) throw lost();
      },
      release: () => held.release(),
    };
  }

  return { get, published, lock };
}

export type Cursors = ReturnType<typeof createCursors>;
