// Store failures reach GraphQL clients as DEPENDENCY_UNAVAILABLE naming the store, whatever
// form the client library gives them.
import net, { type AddressInfo } from "node:net";

import { afterEach, describe, expect, it } from "vitest";

import { readConfigWith } from "../common/config.ts";
import { createRedis } from "../common/stores.ts";
import { DomainError, using } from "../gateway/src/errors.ts";

const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

describe("dependency errors", () => {
  it("reports a Redis that keeps dropping the connection as DEPENDENCY_UNAVAILABLE", async () => {
    // A server that accepts and at once resets every connection: a Redis that died and is restarting.
    const dropping = net.createServer((socket) => socket.resetAndDestroy());
    await new Promise<void>((resolve) => dropping.listen(0, "127.0.0.1", resolve));
    closers.push(() => new Promise((resolve) => dropping.close(resolve)));
    const port = (dropping.address() as AddressInfo).port;
    const redis = createRedis(readConfigWith({ REDIS_URL: `redis://127.0.0.1:${port}` }), "test");
    redis.on("error", () => undefined);
    closers.push(async () => redis.disconnect());

    const failure = await using("redis", () => redis.get("any")).catch((err: unknown) => err);
    expect(failure).toBeInstanceOf(DomainError);
    expect((failure as DomainError).extensions).toMatchObject({ code: "DEPENDENCY_UNAVAILABLE", dependency: "redis" });
  });
});
