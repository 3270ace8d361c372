// A Redis lock owned by a token and kept alive while held: it expires by itself if its holder
// dies. Only the holder may act under it (the scripts check the token) or release it.
import { randomUUID } from "node:crypto";

import type { Redis } from "ioredis";

import { sleep } from "../../../common/errors.ts";
import { using } from "../errors.ts";

const RELEASE_IF_HOLDER = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end`;
const RELEASE_RETRY_MS = 200;
const EXTEND_IF_HOLDER = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end`;

export interface HeldLock {
  key: string;
  token: string;
  release(): Promise<void>;
}

/** Takes the lock if it is free; null if another holder has it. */
export async function tryLock(redis: Redis, key: string, ttlMs: number): Promise<HeldLock | null> {
  const token = randomUUID();
  const ok = await using("redis", () => redis.set(key, token, "PX", ttlMs, "NX"));
  if (ok !== "OK") return null;
  // The latest moment the lock can still be in Redis: its last successful (re)start plus its time to live.
  let expiresBy = Date.now() + ttlMs;
  const keepAlive = setInterval(
    () => {
      const at = Date.now();
      redis.eval(EXTEND_IF_HOLDER, 1, key, token, String(ttlMs)).then(
        () => (expiresBy = at + ttlMs),
        () => undefined,
      );
    },
    Math.max(250, Math.floor(ttlMs / 3)),
  );
  keepAlive.unref();
  return {
    key,
    token,
    async release() {
      clearInterval(keepAlive);
      if (!(await releaseOnce(redis, key, token))) releaseLater(redis, key, token, expiresBy);
    },
  };
}

async function releaseOnce(redis: Redis, key: string, token: string): Promise<boolean> {
  return redis.eval(RELEASE_IF_HOLDER, 1, key, token).then(
    () => true,
    () => false,
  );
}

/**
 * A release that failed (Redis unreachable) is retried in the background until it succeeds or the
 * lock has expired by itself: a Redis that comes back with the lock in its append-only file must
 * not refuse every other holder for the rest of the lock's time to live.
 */
function releaseLater(redis: Redis, key: string, token: string, expiresBy: number): void {
  const retry = setTimeout(async () => {
    if (Date.now() >= expiresBy || (await releaseOnce(redis, key, token))) return;
    releaseLater(redis, key, token, expiresBy);
  }, RELEASE_RETRY_MS);
  retry.unref();
}

/** Takes the lock, waiting up to `waitMs` for its holder to release it; null if it did not. */
export async function waitForLock(redis: Redis, key: string, ttlMs: number, waitMs: number): Promise<HeldLock | null> {
  const deadline = Date.now() + waitMs;
  for (let delay = 10; ; delay = Math.min(delay * 2, 200)) {
    const held = await tryLock(redis, key, ttlMs);
    if (held || Date.now() >= deadline) return held;
    await sleep(Math.min(delay, Math.max(0, deadline - Date.now())));
  }
}
