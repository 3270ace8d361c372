// Dead-letter groups kept by the consumer, the redrive and the discard, reconciled against
// what the dead-letter queue really holds; and discards that die midway.
import { randomUUID } from "node:crypto";

import { afterEach, describe, expect, it } from "vitest";

import { CONTENT_TYPE, HEADERS, type OrderMessage, type System } from "../common/contract.ts";
import { deadLetterGroupKey, deadLetterGroupsKey, groupReasonOf, removeFromGroups } from "../common/dead-letter-groups.ts";
import { counterKey } from "../common/keys.ts";
import { decide } from "../consumer/src/decide.ts";
import { graphql, type ResultOf } from "../gateway/client/graphql.ts";
import { RESTORE_GROUPS } from "../gateway/dashboard/src/operations.ts";
import { discardDeadLetters } from "../gateway/src/services/dead-letters.ts";
import { createTestEnv, type TestEnv, waitFor } from "./support/env.ts";
import { typedGql } from "./typed-gql.ts";

let env: TestEnv | undefined;
afterEach(async () => {
  await env?.cleanup();
  env = undefined;
});

const GROUPS = graphql(`
  query ($system: System) {
    deadLetterGroups(system: $system) {
      system
      reason
      count
      oldestDeadAt
      newestDeadAt
      sampleMessageId
    }
  }
`);
const REDRIVE = graphql(`
  mutation ($system: System, $reason: String) {
    redriveDeadLetters(system: $system, reason: $reason) {
      matched
      moved
    }
  }
`);
const DISCARD = graphql(`
  mutation ($system: System, $reason: String, $dryRun: Boolean) {
    discardDeadLetters(system: $system, reason: $reason, dryRun: $dryRun) {
      matched
      discarded
      dryRun
      letters {
        messageId
        group
      }
    }
  }
`);

type Group = ResultOf<typeof GROUPS>["deadLetterGroups"][number];

function order(system: "SYSTEM1" | "SYSTEM2", requiredAttempts: number): OrderMessage {
  return {
    messageId: randomUUID(),
    source: { system, orderId: Math.floor(Math.random() * 1e9) + 1 },
    order: { product: "Lamp", price: "9.99", securityCheck: requiredAttempts <= 2 },
    requiredAttempts,
    publishedAt: new Date().toISOString(),
  };
}

async function publish(e: TestEnv, body: Buffer | OrderMessage, headers: Record<string, unknown> = { [HEADERS.attempt]: 1 }) {
  const content = Buffer.isBuffer(body) ? body : Buffer.from(JSON.stringify(body));
  await e.broker.publish(e.broker.topology.exchange, e.broker.topology.routingKey, content, {
    persistent: true,
    contentType: CONTENT_TYPE,
    messageId: Buffer.isBuffer(body) ? randomUUID() : body.messageId,
    headers,
  });
}

/** The groups as the DLQ's contents say they should be (left in the queue: the channel closes with them unacked). */
async function groupsFromQueue(e: TestEnv): Promise<Group[]> {
  const letters = await e.broker.withChannel(async (ch) => {
    const out: { system: System | null; reason: string; messageId: string; deadAt: number }[] = [];
    for (;;) {
      const m = await ch.get(e.broker.topology.dlq, { noAck: false });
      if (!m) return out;
      const h = m.properties.headers ?? {};
      const reason = groupReasonOf(h[HEADERS.deadReason] as string);
      let system: System | null = null;
      if (!reason.startsWith("rejected:")) system = (JSON.parse(m.content.toString()) as OrderMessage).source.system;
      out.push({ system, reason, messageId: m.properties.messageId as string, deadAt: Date.parse(h[HEADERS.deadAt] as string) });
    }
  });
  const byGroup = new Map<string, typeof letters>();
  for (const l of letters) byGroup.set(`${l.system}:${l.reason}`, [...(byGroup.get(`${l.system}:${l.reason}`) ?? []), l]);
  return [...byGroup.values()]
    .map((ls) => {
      ls.sort((a, b) => a.deadAt - b.deadAt || (a.messageId < b.messageId ? -1 : 1));
      return {
        system: ls[0]!.system,
        reason: ls[0]!.reason,
        count: ls.length,
        oldestDeadAt: new Date(ls[0]!.deadAt).toISOString(),
        newestDeadAt: new Date(ls[ls.length - 1]!.deadAt).toISOString(),
        sampleMessageId: ls[0]!.messageId,
      };
    })
    .sort(byKey);
}

const byKey = (a: Group, b: Group) => `${a.system}:${a.reason}`.localeCompare(`${b.system}:${b.reason}`);

async function groups(e: TestEnv): Promise<Group[]> {
  const r = await typedGql(() => e)(GROUPS);
  expect(r.errors).toBeUndefined();
  return [...r.data!.deadLetterGroups].sort(byKey);
}

/** The groups the gateway answers are exactly those the queue's contents make. */
async function expectReconciled(e: TestEnv): Promise<Group[]> {
  const answered = await groups(e);
  expect(answered).toEqual(await groupsFromQueue(e));
  return answered;
}

const summary = (gs: Group[]) => gs.map((g) => [g.system, g.reason, g.count]);

describe("dead-letter groups", () => {
  it("stay exact against the queue through exhausted and rejected messages, a redrive, a discard and another run", async () => {
    const e = (env = await createTestEnv({ MAX_ATTEMPTS: "2" }));
    const consumer = await e.startConsumer();
    const exhausted1 = [order("SYSTEM1", 3), order("SYSTEM1", 3), order("SYSTEM1", 3)];
    const exhausted2 = [order("SYSTEM2", 5), order("SYSTEM2", 5)];
    for (const m of [...exhausted1, ...exhausted2, order("SYSTEM1", 1)]) await publish(e, m);
    await publish(e, Buffer.from("not json"));
    await publish(e, Buffer.from("{not json either"));
    await publish(e, order("SYSTEM2", 1), {}); // no attempt header
    await e.drained();
    await waitFor(
      () => e.queueDepth(e.broker.topology.dlq),
      (n) => n === 8,
    );

    expect(summary(await expectReconciled(e))).toEqual([
      [null, "rejected:bad-headers", 1],
      [null, "rejected:not-json", 2],
      ["SYSTEM1", "max-attempts", 3],
      ["SYSTEM2", "max-attempts", 2],
    ]);
    const gql = typedGql(() => e);
    const only2 = await gql(GROUPS, { system: "SYSTEM2" });
    expect(only2.data!.deadLetterGroups.map((g) => [g.system, g.reason, g.count])).toEqual([["SYSTEM2", "max-attempts", 2]]);

    // A redrive of one group takes it out while its messages wait in the primary queue.
    await consumer.stop();
    const redriven = await gql(REDRIVE, { system: "SYSTEM2", reason: "max-attempts" });
    expect(redriven.data).toEqual({ redriveDeadLetters: { matched: 2, moved: 2 } });
    expect(summary(await expectReconciled(e))).toEqual([
      [null, "rejected:bad-headers", 1],
      [null, "rejected:not-json", 2],
      ["SYSTEM1", "max-attempts", 3],
    ]);

    // A dry run lists the rejected ones and changes nothing; the discard removes them for good.
    const dry = await gql(DISCARD, { reason: "rejected", dryRun: true });
    expect(dry.errors).toBeUndefined();
    expect(dry.data!.discardDeadLetters).toMatchObject({ matched: 3, discarded: 0 });
    expect(dry.data!.discardDeadLetters.letters.map((l) => l.group).sort()).toEqual([
      "rejected:bad-headers",
      "rejected:not-json",
      "rejected:not-json",
    ]);
    expect(await e.queueDepth(e.broker.topology.dlq)).toBe(6);
    expect(await e.log.count({ status: "DISCARDED" })).toBe(0);

    const rejectedIds = dry.data!.discardDeadLetters.letters.map((l) => l.messageId);
    const done = await gql(DISCARD, { reason: "rejected" });
    expect(done.data).toMatchObject({ discardDeadLetters: { matched: 3, discarded: 3, dryRun: false } });
    expect(summary(await expectReconciled(e))).toEqual([["SYSTEM1", "max-attempts", 3]]);
    expect(await e.queueDepth(e.broker.topology.dlq)).toBe(3);
    for (const id of rejectedIds) {
      const history = await e.log.history(id);
      expect(history.map((d) => d.status)).toEqual(["REJECTED", "DISCARDED"]);
      // Released: nothing of it is retained any more.
      expect(history.every((d) => d.expiresAt !== null && !d.retained)).toBe(true);
    }
    const ops = await e.log.collection.db.collection("discards").find().sort({ at: 1 }).toArray();
    expect(ops.map((o) => [o.dryRun, o.matched, o.discarded, o.filter.reason, typeof o.by, o.at instanceof Date])).toEqual([
      [true, 3, 0, "rejected", "string", true],
      [false, 3, 3, "rejected", "string", true],
    ]);
    expect(Number(await e.redis.hget(counterKey(e.config), "UNKNOWN:DISCARDED"))).toBe(3);

    // Another run: the redriven messages fail their new round and join their group again.
    await e.startConsumer();
    await e.drained();
    await waitFor(
      () => e.queueDepth(e.broker.topology.dlq),
      (n) => n === 5,
    );
    const after = await expectReconciled(e);
    expect(summary(after)).toEqual([
      ["SYSTEM1", "max-attempts", 3],
      ["SYSTEM2", "max-attempts", 2],
    ]);
    for (const m of exhausted2)
      expect((await e.log.history(m.messageId)).at(-1)).toMatchObject({ round: 1, status: "DEAD_LETTERED" });
  });

  it("finishes a discard that died before its ack: the copy never leaves without its DISCARDED entry, counted once", async () => {
    const e = (env = await createTestEnv({ MAX_ATTEMPTS: "1", GATEWAY_TOKEN: "s3cret-token-for-discards" }));
    const auth = { authorization: "Bearer s3cret-token-for-discards" };
    const consumer = await e.startConsumer();
    const m = order("SYSTEM1", 2);
    await publish(e, m);
    await e.drained();
    await waitFor(
      () => e.queueDepth(e.broker.topology.dlq),
      (n) => n === 1,
    );
    await consumer.stop();

    // Without the token the gateway refuses the mutation.
    const gql = typedGql(() => e);
    const refused = await gql(DISCARD, { system: "SYSTEM1" });
    expect(refused.errors?.[0]?.extensions?.code).toBe("UNAUTHENTICATED");
    expect(await e.queueDepth(e.broker.topology.dlq)).toBe(1);

    const deps = { broker: e.broker, log: e.log, redis: e.redis, config: e.config, logger: e.logger };
    await expect(
      discardDeadLetters({ ...deps, filter: { system: "SYSTEM1" }, beforeAck: () => Promise.reject(new Error("gateway died")) }),
    ).rejects.toThrow("gateway died");
    // Logged, not acked: still in the queue and its group, its whole history retained.
    expect(await e.queueDepth(e.broker.topology.dlq)).toBe(1);
    expect(summary(await expectReconciled(e))).toEqual([["SYSTEM1", "max-attempts", 1]]);
    const held = await e.log.history(m.messageId);
    expect(held.map((d) => [d.status, d.expiresAt])).toEqual([
      ["DEAD_LETTERED", null],
      ["DISCARDED", null],
    ]);

    // Run again: the entry is found (not written twice, not counted twice) and the copy removed.
    const again = await gql(DISCARD, { system: "SYSTEM1" }, auth);
    expect(again.data).toMatchObject({ discardDeadLetters: { matched: 1, discarded: 1 } });
    expect(await e.queueDepth(e.broker.topology.dlq)).toBe(0);
    expect(await expectReconciled(e)).toEqual([]);
    const history = await e.log.history(m.messageId);
    expect(history.map((d) => d.status)).toEqual(["DEAD_LETTERED", "DISCARDED"]);
    expect(history.every((d) => d.expiresAt !== null)).toBe(true);
    expect(Number(await e.redis.hget(counterKey(e.config), "SYSTEM1:DISCARDED"))).toBe(1);

    // A discard needs a filter: it never takes the whole queue.
    const unfiltered = await gql(
      graphql(`
        mutation {
          discardDeadLetters {
            matched
          }
        }
      `),
      {},
      auth,
    );
    expect(unfiltered.errors?.[0]?.extensions?.code).toBe("BAD_USER_INPUT");
  });

  it("keeps a dead letter that failed again before the walk that sent it back took it out of its group", async () => {
    const e = (env = await createTestEnv({ MAX_ATTEMPTS: "1" }));
    const consumer = await e.startConsumer();
    const m = order("SYSTEM1", 2);
    await publish(e, m);
    await waitFor(
      () => e.queueDepth(e.broker.topology.dlq),
      (n) => n === 1,
    );
    await consumer.stop();
    const key = deadLetterGroupKey(e.config, "SYSTEM1", "max-attempts");
    const first = Number(await e.redis.zscore(key, m.messageId));
    expect(first).toBeGreaterThan(0);

    // A redrive acked the copy; before it removed the member, the new round failed and the
    // consumer added it again, later. Removing the acked copy must leave the new one.
    const again = first + 1500;
    await e.redis.zadd(key, again, m.messageId);
    await removeFromGroups(e.redis, e.config, [
      { system: "SYSTEM1", reason: "max-attempts", messageId: m.messageId, deadAt: new Date(first) },
    ]);
    expect(Number(await e.redis.zscore(key, m.messageId))).toBe(again);
    expect(summary(await groups(e))).toEqual([["SYSTEM1", "max-attempts", 1]]);

    // The removal of that later copy takes it out.
    await removeFromGroups(e.redis, e.config, [
      { system: "SYSTEM1", reason: "max-attempts", messageId: m.messageId, deadAt: new Date(again) },
    ]);
    expect(await groups(e)).toEqual([]);
  });

  it("are restored from the queue after Redis lost them, and lose the members whose dead letter left it", async () => {
    const e = (env = await createTestEnv({ MAX_ATTEMPTS: "2" }));
    await e.startConsumer();
    for (const m of [order("SYSTEM1", 3), order("SYSTEM1", 3), order("SYSTEM2", 5)]) await publish(e, m);
    await publish(e, Buffer.from("not json"));
    await e.drained();
    await waitFor(
      () => e.queueDepth(e.broker.topology.dlq),
      (n) => n === 4,
    );
    const before = await expectReconciled(e);
    expect(summary(before)).toEqual([
      [null, "rejected:not-json", 1],
      ["SYSTEM1", "max-attempts", 2],
      ["SYSTEM2", "max-attempts", 1],
    ]);

    // What a Redis that lost its data (or these keys) leaves: no group shows the dead letters.
    const gql = typedGql(() => e);
    const keys = await e.redis.keys(`${e.config.redis.prefix}:dead-letter*`);
    expect(keys.length).toBeGreaterThan(1);
    await e.redis.del(...keys);
    expect(await groups(e)).toEqual([]);

    const restored = await gql(RESTORE_GROUPS);
    expect(restored.data).toEqual({ restoreDeadLetterGroups: { walked: 4, restored: 4, removed: 0, complete: true } });
    expect(await expectReconciled(e)).toEqual(before);
    // Nothing was consumed, and a second restore finds every dead letter counted.
    expect(await e.queueDepth(e.broker.topology.dlq)).toBe(4);
    const again = await gql(RESTORE_GROUPS);
    expect(again.data).toEqual({ restoreDeadLetterGroups: { walked: 4, restored: 0, removed: 0, complete: true } });
    expect(await expectReconciled(e)).toEqual(before);

    // A discard whose removal from its group was lost (a gateway that died after the ack) ...
    const discarded = await gql(DISCARD, { system: "SYSTEM2", reason: "max-attempts" });
    expect(discarded.data!.discardDeadLetters).toMatchObject({ matched: 1, discarded: 1 });
    const discardedId = discarded.data!.discardDeadLetters.letters[0]!.messageId;
    await e.redis.zadd(deadLetterGroupKey(e.config, "SYSTEM2", "max-attempts"), Date.now() - 1000, discardedId);
    await e.redis.sadd(deadLetterGroupsKey(e.config), "SYSTEM2:max-attempts");
    // ... and a dead letter counted but not in the queue, with no record of leaving it: what a
    // restore sees while the consumer's forward of a new dead letter is on its way.
    const onItsWay = await e.broker.withChannel(async (ch) => {
      for (;;) {
        const m = await ch.get(e.broker.topology.dlq, { noAck: false });
        if (!m) throw new Error("no max-attempts dead letter in the queue");
        if (m.properties.headers?.[HEADERS.deadReason] !== "max-attempts") continue;
        ch.ack(m);
        await ch.checkQueue(e.broker.topology.dlq);
        return m.properties.messageId as string;
      }
    });
    const reconciled = await gql(RESTORE_GROUPS);
    expect(reconciled.data).toEqual({ restoreDeadLetterGroups: { walked: 2, restored: 0, removed: 1, complete: true } });
    expect(summary(await groups(e))).toEqual([
      [null, "rejected:not-json", 1],
      ["SYSTEM1", "max-attempts", 2],
    ]);
    expect(await e.redis.zscore(deadLetterGroupKey(e.config, "SYSTEM1", "max-attempts"), onItsWay)).not.toBeNull();
  });

  it("classifies every rejection the consumer makes into a stable reason", () => {
    const opts = { maxAttempts: 2, maxMessageBytes: 1000 };
    const body = Buffer.from(JSON.stringify(order("SYSTEM1", 1)));
    const cases: [Buffer, Record<string, unknown>, string][] = [
      [Buffer.alloc(2000, 0x20), { [HEADERS.attempt]: 1 }, "rejected:too-large"],
      [body, {}, "rejected:bad-headers"],
      [body, { [HEADERS.attempt]: "x" }, "rejected:bad-headers"],
      [body, { [HEADERS.attempt]: 1, [HEADERS.contractVersion]: 9 }, "rejected:unsupported-contract"],
      [Buffer.from("nope"), { [HEADERS.attempt]: 1 }, "rejected:not-json"],
      [Buffer.from("{}"), { [HEADERS.attempt]: 1 }, "rejected:contract-mismatch"],
      [
        Buffer.from(
          JSON.stringify({ ...order("SYSTEM1", 1), order: { product: "a\u0000b", price: "1.00", securityCheck: true } }),
        ),
        { [HEADERS.attempt]: 1 },
        "rejected:unstorable",
      ],
    ];
    for (const [content, headers, reason] of cases) {
      const outcome = decide(content, headers, opts);
      expect(outcome.kind).toBe("REJECTED");
      if (outcome.kind === "REJECTED")
        expect([groupReasonOf(`${outcome.reason}: ${outcome.error}`), outcome.error]).toEqual([reason, outcome.error]);
    }
    expect(groupReasonOf("max-attempts")).toBe("max-attempts");
    expect(groupReasonOf(undefined)).toBe("unknown");
    expect(groupReasonOf("rejected: something new")).toBe("rejected:other");
  });
});
