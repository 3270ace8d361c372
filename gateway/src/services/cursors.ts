// The Redis cursor per system (the highest source id whose message the broker
// confirmed) and the per-system publish lock that serialises publishers.
import { randomUUID } from "node:crypto";

import type { Redis } from "ioredis";

import type { Config } from "../../../common/config.ts";
import type { System } from "../../../common/contract.ts";
import { cursorKey, publishLockKey } from "../../../common/keys.ts";
import { DomainError, using } from "../errors.ts";

// Only the holder of the lock may move the cursor or release the lock.
const SET_IF_HOLDER = `if redis.call('get', KEYS[1]) == ARGV[1] then redis.call('set', KEYS[2], ARGV[2]) return 1 else return 0 end`;
const RELEASE_IF_HOLDER = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end`;
const EXTEND_IF_HOLDER = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end`;

export interface PublishLock {
  /** Sets the cursor if this lock is still held; throws if it was lost. */
  setCursor(value: number): Promise<void>;
  release(): Promise<void>;
}

export function createCursors(redis: Redis, config: Config) {
  async function get(system: System): Promise<number> {
    const raw = await using("redis", () => redis.get(cursorKey(config, system)));
    const n = raw === null ? 0 : Number(raw);
    return Number.isSafeInteger(n) && n >= 0 ? n : 0;
  }

  async function lock(system: System): Promise<PublishLock> {
    const key = publishLockKey(config, system);
    const token = randomUUID();
    const ttl = config.gateway.publishLockTtlMs;
    const ok = await using("redis", () => redis.set(key, token, "PX", ttl, "NX"));
    if (ok !== "OK") {
      throw new DomainError(
        "PUBLISH_IN_PROGRESS",
        `${system} is already being published or reset by another request; try again when it finishes`,
        { system },
      );
    }
    // Keep the lock alive while the holder works; it expires by itself if the holder dies.
    const keepAlive = setInterval(
      () => {
        redis.eval(EXTEND_IF_HOLDER, 1, key, token, String(ttl)).catch(() => undefined);
      },
      Math.max(250, Math.floor(ttl / 3)),
    );
    keepAlive.unref();
    return {
      async setCursor(value) {
        const held = await using("redis", () =>
          redis.eval(SET_IF_HOLDER, 2, key, cursorKey(config, system), token, String(value)),
        );
        if (held !== 1)
          throw new DomainError("PUBLISH_IN_PROGRESS", `lost the ${system} publish lock; another publisher took over`, {
            system,
          });
      },
      async release() {
        clearInterval(keepAlive);
        await redis.eval(RELEASE_IF_HOLDER, 1, key, token).catch(() => undefined);
      },
    };
  }

  return { get, lock };
}

export type Cursors = ReturnType<typeof createCursors>;
