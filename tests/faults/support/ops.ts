// GraphQL operations the scenarios drive the gateway with, and small waits.
import type { System } from "../../../common/contract.ts";
import { sleep } from "../../../common/errors.ts";
import { counterKey } from "../../../common/keys.ts";
import type { ResultOf } from "../../../gateway/client/graphql.ts";
import { PUBLISH, SEED } from "../../../gateway/client/operations.ts";
import { gqlOn } from "../../typed-gql.ts";
import type { World } from "./world.ts";

export { sleep };

export async function seed(world: World, system: System, count: number): Promise<void> {
  for (let left = count; left > 0; left -= 100_000) {
    const n = Math.min(left, 100_000);
    const r = await gqlOn(world, SEED, { system, count: n });
    if (r.data?.seedOrders.inserted !== n) throw new Error(`seedOrders(${system}, ${n}) failed: ${JSON.stringify(r)}`);
  }
}

export async function publishAll(world: World, system: System): Promise<number> {
  const r = await gqlOn(world, PUBLISH, { system });
  if (!r.data) throw new Error(`publishPending(${system}) failed: ${JSON.stringify(r)}`);
  return r.data.publishPending.published;
}

/** Attempts processed so far, from the consumers' Redis counters (counting the log on FerretDB is slow). */
export async function attemptsDone(world: World): Promise<number> {
  const counters = await world.redis.hgetall(counterKey(world.config));
  return Object.values(counters).reduce((n, v) => n + Number(v), 0);
}

/** Ready messages in the primary and wait queues. */
export async function pendingWork(world: World): Promise<number> {
  const counts = await world.readyCounts();
  return [world.topology.primary, ...world.topology.waitQueues.map((w) => w.name)].reduce((n, q) => n + (counts[q] ?? 0), 0);
}

export type Published = ResultOf<typeof PUBLISH>["publishPending"];

/** Publishes everything pending, retrying while the gateway reports the broker unavailable or a publish in progress. */
export async function publishRetrying(
  world: World,
  system: System,
  timeoutMs = 120_000,
): Promise<{ result: Published; refused: string[] }> {
  const deadline = Date.now() + timeoutMs;
  const refused: string[] = [];
  for (;;) {
    const r = await gqlOn(world, PUBLISH, { system });
    if (r.data) return { result: r.data.publishPending, refused };
    const code = String(r.errors?.[0]?.extensions?.code);
    if (!["DEPENDENCY_UNAVAILABLE", "PUBLISH_IN_PROGRESS"].includes(code) || Date.now() > deadline)
      throw new Error(`publishPending(${system}) failed: ${JSON.stringify(r)}`);
    refused.push(code);
    await sleep(250);
  }
}
