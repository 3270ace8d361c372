// The publish side against the real PostgreSQL, Redis and RabbitMQ.
import type { Channel } from "amqplib";
import pg from "pg";
import { afterEach, beforeEach, describe, expect, it } from "vitest";

import { CONTRACT_VERSION, HEADERS, type OrderMessage } from "../common/contract.ts";
import { cursorKey } from "../common/keys.ts";
import { graphql } from "../gateway/client/graphql.ts";
import { CURSORS, PUBLISH } from "../gateway/client/operations.ts";
import { createTestEnv, type TestEnv, waitFor } from "./support/env.ts";
import { typedGql } from "./typed-gql.ts";

let env: TestEnv;
beforeEach(async () => {
  env = await createTestEnv();
});
afterEach(async () => {
  await env.cleanup();
});

const gql = typedGql(() => env);

const SEED = graphql(`
  mutation ($system: System!, $count: Int!, $ratio: Float) {
    seedOrders(system: $system, count: $count, securityCheckRatio: $ratio) {
      system
      inserted
      firstId
      lastId
      securityCheckTrue
    }
  }
`);

interface Drained {
  message: OrderMessage;
  headers: Record<string, unknown>;
  messageId: string | undefined;
  persistent: boolean;
}

/** Takes every message off the primary queue (there is no consumer in these tests). */
async function drainPrimary(): Promise<Drained[]> {
  return env.broker.withChannel(async (ch: Channel) => {
    const out: Drained[] = [];
    for (;;) {
      const msg = await ch.get(env.broker.topology.primary, { noAck: true });
      if (!msg) return out;
      out.push({
        message: JSON.parse(msg.content.toString()) as OrderMessage,
        headers: msg.properties.headers ?? {},
        messageId: msg.properties.messageId as string | undefined,
        persistent: msg.properties.deliveryMode === 2,
      });
    }
  });
}

describe("seedOrders", () => {
  it("inserts random orders with the requested share of security_check = true", async () => {
    const r = await gql(SEED, { system: "SYSTEM1", count: 1000, ratio: 0.3 });
    expect(r.errors, JSON.stringify(r.errors)).toBeUndefined();
    expect(r.data).toEqual({
      seedOrders: { system: "SYSTEM1", inserted: 1000, firstId: 1, lastId: 1000, securityCheckTrue: 300 },
    });
    expect(await env.sources.SYSTEM1.order.count()).toBe(1000);
    expect(await env.sources.SYSTEM1.order.count({ where: { securityCheck: true } })).toBe(300);
    expect(await env.sources.SYSTEM2.order.count()).toBe(0);
    const prices = await env.sources.SYSTEM1.order.findMany({ select: { price: true }, take: 50 });
    for (const { price } of prices) expect(price.toFixed(2)).toMatch(/^\d+\.\d{2}$/);
  });

  it.each([
    [{ count: 0 }, /count must be between 1 and 100000/],
    [{ count: 100001 }, /count must be between 1 and 100000/],
    [{ count: 10, ratio: 1.5 }, /securityCheckRatio must be between 0 and 1/],
    [{ count: 10, ratio: -0.1 }, /securityCheckRatio must be between 0 and 1/],
  ])("rejects %o with a typed error and inserts nothing", async (vars, message) => {
    const r = await gql(SEED, { system: "SYSTEM1", ...vars });
    expect(r.data).toBeNull();
    expect(r.errors?.[0]?.message).toMatch(message);
    expect(r.errors?.[0]?.extensions?.code).toBe("BAD_USER_INPUT");
    expect(await env.sources.SYSTEM1.order.count()).toBe(0);
  });

  it("rejects an unknown system at validation", async () => {
    // @ts-expect-error SYSTEM3 is not a System: the gateway must refuse it too.
    const r = await gql(SEED, { system: "SYSTEM3", count: 1 });
    expect(r.errors?.[0]?.message).toMatch(/SYSTEM3/);
  });
});

describe("publishPending", () => {
  it("publishes exactly the pending rows, advances the cursor, and a second call publishes nothing", async () => {
    await gql(SEED, { system: "SYSTEM1", count: 250, ratio: 0.5 });
    const first = await gql(PUBLISH, { system: "SYSTEM1" });
    expect(first.errors).toBeUndefined();
    expect(first.data).toEqual({
      publishPending: { system: "SYSTEM1", published: 250, fromId: 1, toId: 250, cursor: 250, waitingOnTransactions: false },
    });
    expect(await env.redis.get(cursorKey(env.config, "SYSTEM1"))).toBe("250");

    const msgs = await drainPrimary();
    expect(msgs).toHaveLength(250);
    expect(msgs.map((m) => m.message.source.orderId)).toEqual(Array.from({ length: 250 }, (_, i) => i + 1));
    const rows = await env.sources.SYSTEM1.order.findMany({ orderBy: { id: "asc" } });
    msgs.forEach((m, i) => {
      const row = rows[i]!;
      expect(m.persistent).toBe(true);
      expect(m.messageId).toBe(m.message.messageId);
      expect(m.headers[HEADERS.attempt]).toBe(1);
      expect(m.headers[HEADERS.contractVersion]).toBe(CONTRACT_VERSION);
      expect(m.message.order).toEqual({ product: row.product, price: row.price.toFixed(2), securityCheck: row.securityCheck });
      // The seed's rule: true orders need 1..5 attempts, false orders 6.
      const expected = row.securityCheck ? [1, 2, 3, 4, 5] : [6];
      expect(expected).toContain(m.message.requiredAttempts);
      expect(m.headers["x-system"]).toBe("SYSTEM1");
    });
    // Every message is a copy of its own, though the batch shares one headers object.
    const copies = msgs.map((m) => String(m.headers[HEADERS.copyId]));
    for (const c of copies) expect(c).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(new Set(copies).size).toBe(250);

    const second = await gql(PUBLISH, { system: "SYSTEM1" });
    expect(second.data).toEqual({
      publishPending: { system: "SYSTEM1", published: 0, fromId: null, toId: null, cursor: 250, waitingOnTransactions: false },
    });
    expect(await drainPrimary()).toHaveLength(0);

    await gql(SEED, { system: "SYSTEM1", count: 10 });
    const third = await gql(PUBLISH, { system: "SYSTEM1" });
    expect(third.data).toMatchObject({ publishPending: { published: 10, fromId: 251, toId: 260, cursor: 260 } });
  });

  it("honours limit and reports pending through cursors", async () => {
    await gql(SEED, { system: "SYSTEM2", count: 100 });
    const r = await gql(PUBLISH, { system: "SYSTEM2", limit: 30 });
    expect(r.data).toMatchObject({ publishPending: { published: 30, fromId: 1, toId: 30, cursor: 30 } });
    const c = await gql(CURSORS);
    expect(c.data).toEqual({
      cursors: [
        { system: "SYSTEM1", lastPublishedId: 0, pending: 0 },
        { system: "SYSTEM2", lastPublishedId: 30, pending: 70 },
      ],
    });
    const bad = await gql(PUBLISH, { system: "SYSTEM2", limit: 0 });
    expect(bad.errors?.[0]?.extensions?.code).toBe("BAD_USER_INPUT");
  });

  it("serialises concurrent publishes of one system: no message is published twice", async () => {
    await gql(SEED, { system: "SYSTEM1", count: 3000 });
    const results = await Promise.all([1, 2, 3, 4].map(() => gql(PUBLISH, { system: "SYSTEM1" })));
    const published = results.map(
      (r) => (r.data as { publishPending?: { published: number } } | null)?.publishPending?.published ?? 0,
    );
    const refused = results.filter((r) => r.errors?.[0]?.extensions?.code === "PUBLISH_IN_PROGRESS");
    expect(published.reduce((a, b) => a + b, 0) + 0).toBeLessThanOrEqual(3000);
    expect(refused.length).toBeGreaterThanOrEqual(1);
    // Whatever was refused is published by a later call; in total each row goes out once.
    await gql(PUBLISH, { system: "SYSTEM1" });
    const msgs = await drainPrimary();
    const ids = msgs.map((m) => m.message.source.orderId);
    expect(ids).toHaveLength(3000);
    expect(new Set(ids).size).toBe(3000);
  });

  it("publishes both systems in parallel into the one queue", async () => {
    await Promise.all([gql(SEED, { system: "SYSTEM1", count: 2000 }), gql(SEED, { system: "SYSTEM2", count: 1500 })]);
    const [a, b] = await Promise.all([gql(PUBLISH, { system: "SYSTEM1" }), gql(PUBLISH, { system: "SYSTEM2" })]);
    expect(a.data).toMatchObject({ publishPending: { published: 2000 } });
    expect(b.data).toMatchObject({ publishPending: { published: 1500 } });
    const msgs = await drainPrimary();
    expect(msgs.filter((m) => m.message.source.system === "SYSTEM1")).toHaveLength(2000);
    expect(msgs.filter((m) => m.message.source.system === "SYSTEM2")).toHaveLength(1500);
  });

  it("never skips a row whose transaction commits after a higher id was published", async () => {
    const url = env.config.databases.system1;
    const slow = new pg.Client({ connectionString: url });
    const fast = new pg.Client({ connectionString: url });
    await slow.connect();
    await fast.connect();
    try {
      await gql(SEED, { system: "SYSTEM1", count: 5 });
      // An open transaction holds id 6; id 7 commits first.
      await slow.query("begin");
      const held = await slow.query<{ id: number }>(
        "insert into orders (product, price, security_check) values ('late', 1.00, true) returning id",
      );
      const early = await fast.query<{ id: number }>(
        "insert into orders (product, price, security_check) values ('early', 2.00, true) returning id",
      );
      expect(held.rows[0]!.id).toBeLessThan(early.rows[0]!.id);

      const r1 = await gql(PUBLISH, { system: "SYSTEM1" });
      expect(r1.data).toMatchObject({ publishPending: { published: 5, toId: 5, cursor: 5, waitingOnTransactions: true } });

      await slow.query("commit");
      const r2 = await gql(PUBLISH, { system: "SYSTEM1" });
      expect(r2.data).toMatchObject({
        publishPending: { published: 2, fromId: 6, toId: 7, cursor: 7, waitingOnTransactions: false },
      });

      const ids = (await drainPrimary()).map((m) => m.message.source.orderId);
      expect(ids).toEqual([1, 2, 3, 4, 5, 6, 7]);
    } finally {
      await slow.end();
      await fast.end();
    }
  });

  it("never skips a row whose id was drawn before its transaction had an xid", async () => {
    const url = env.config.databases.system1;
    const client = () => new pg.Client({ connectionString: url });
    const [admin, gate, slow, fast] = [client(), client(), client(), client()];
    for (const c of [admin, gate, slow, fast]) await c.connect();
    try {
      await gql(SEED, { system: "SYSTEM1", count: 5 });
      // A BEFORE INSERT trigger runs after the id default drew its value and before the row is
      // written, which is when the transaction gets its xid. It reports whether it has one, then
      // waits for an advisory lock the test holds.
      await admin.query(`create function hold_slow() returns trigger language plpgsql as $$
        begin
          if new.product = 'slow' then
            raise notice 'id=% xid=%', new.id, coalesce(pg_current_xact_id_if_assigned()::text, 'none');
            perform pg_advisory_xact_lock(7013);
          end if;
          return new;
        end $$`);
      await admin.query("create trigger hold_slow before insert on orders for each row execute function hold_slow()");
      await gate.query("select pg_advisory_lock(7013)");
      // A nextval that WAL-logs the sequence gives its transaction an xid; one drawn here (id 6, never
      // used) leaves the next ones unlogged, and the trigger's report proves it.
      await admin.query("select nextval(pg_get_serial_sequence('orders', 'id'))");
      const drawn = new Promise<string>((resolve) => slow.once("notice", (n: { message?: string }) => resolve(n.message ?? "")));
      await slow.query("begin");
      const inserting = slow.query("insert into orders (product, price, security_check) values ('slow', 1.00, true)");
      expect(await drawn).toBe("id=7 xid=none");
      const early = await fast.query<{ id: number }>(
        "insert into orders (product, price, security_check) values ('early', 2.00, true) returning id",
      );
      expect(early.rows[0]!.id).toBe(8);

      const held = await gql(PUBLISH, { system: "SYSTEM1" });
      expect(held.data).toMatchObject({ publishPending: { published: 5, toId: 5, cursor: 5, waitingOnTransactions: true } });

      // The row is written now and the transaction has an xid, younger than id 8's: still held.
      await gate.query("select pg_advisory_unlock(7013)");
      await inserting;
      const stillHeld = await gql(PUBLISH, { system: "SYSTEM1" });
      expect(stillHeld.data).toMatchObject({ publishPending: { published: 0, cursor: 5, waitingOnTransactions: true } });

      await slow.query("commit");
      const r = await gql(PUBLISH, { system: "SYSTEM1" });
      expect(r.data).toMatchObject({
        publishPending: { published: 2, fromId: 7, toId: 8, cursor: 8, waitingOnTransactions: false },
      });
      const ids = (await drainPrimary()).map((m) => m.message.source.orderId);
      expect(ids).toEqual([1, 2, 3, 4, 5, 7, 8]);
    } finally {
      for (const c of [gate, slow, fast, admin]) await c.end().catch(() => undefined);
    }
  });

  it("passes a dead gap while a transaction only reads the sequence, and stops at it while one drew from it", async () => {
    const url = env.config.databases.system1;
    const reader = new pg.Client({ connectionString: url });
    const drawer = new pg.Client({ connectionString: url });
    await reader.connect();
    await drawer.connect();
    try {
      await gql(SEED, { system: "SYSTEM1", count: 2 });
      await drawer.query("select nextval(pg_get_serial_sequence('orders', 'id'))"); // id 3, never used
      await gql(SEED, { system: "SYSTEM1", count: 2 });
      // An open transaction that drew id 6 and wrote nothing yet may still insert any id it draws.
      await drawer.query("begin");
      await drawer.query("select nextval(pg_get_serial_sequence('orders', 'id'))");
      const held = await gql(PUBLISH, { system: "SYSTEM1" });
      expect(held.data).toMatchObject({ publishPending: { published: 2, toId: 2, waitingOnTransactions: true } });
      await drawer.query("rollback");
      // A reader of the sequence (a dump, say) draws nothing.
      await reader.query("begin");
      await reader.query("select last_value from orders_id_seq");
      const r = await gql(PUBLISH, { system: "SYSTEM1" });
      expect(r.data).toMatchObject({ publishPending: { published: 2, fromId: 4, toId: 5, waitingOnTransactions: false } });
      await reader.query("rollback");
    } finally {
      await reader.end();
      await drawer.end();
    }
  });

  it("is not held back by a transaction open in another database of the same server", async () => {
    const other = new pg.Client({ connectionString: env.config.databases.system2 });
    await other.connect();
    try {
      await other.query("begin");
      await other.query("insert into orders (product, price, security_check) values ('elsewhere', 1.00, true)");
      await gql(SEED, { system: "SYSTEM1", count: 5 });
      const r = await gql(PUBLISH, { system: "SYSTEM1" });
      expect(r.data).toMatchObject({ publishPending: { published: 5, waitingOnTransactions: false } });
      // The other system's own publish does wait for it.
      const held = await gql(PUBLISH, { system: "SYSTEM2" });
      expect(held.data).toMatchObject({ publishPending: { published: 0 } });
      await other.query("rollback");
    } finally {
      await other.end();
    }
  });

  it("pipelineStats counts the rows published, not the cursor: gaps, deleted rows and a republish", async () => {
    const STATS = graphql(`
      query {
        pipelineStats {
          systems {
            system
            sourceRows
            published
            inFlight
          }
        }
      }
    `);
    const stats = async () => {
      const r = await gql(STATS);
      expect(r.errors).toBeUndefined();
      return r.data!.pipelineStats.systems.find((s) => s.system === "SYSTEM1")!;
    };
    const client = new pg.Client({ connectionString: env.config.databases.system1 });
    await client.connect();
    try {
      await gql(SEED, { system: "SYSTEM1", count: 5 });
      // A rolled-back insert burns ids 6..8; a deleted row leaves 2 out.
      await client.query("begin");
      await client.query(
        "insert into orders (product, price, security_check) select 'gone', 1.00, true from generate_series(1, 3)",
      );
      await client.query("rollback");
      await gql(SEED, { system: "SYSTEM1", count: 5 });
      await client.query("delete from orders where id = 2");

      const r = await gql(PUBLISH, { system: "SYSTEM1" });
      expect(r.data).toMatchObject({ publishPending: { published: 9, fromId: 1, toId: 13, cursor: 13 } });
      expect(await stats()).toEqual({ system: "SYSTEM1", sourceRows: 9, published: 9, inFlight: 9 });

      // A republish sends the rows again but they were published already: the count stays.
      await gql(
        graphql(`
          mutation {
            resetCursor(system: SYSTEM1, to: 0) {
              lastPublishedId
            }
          }
        `),
      );
      const again = await gql(PUBLISH, { system: "SYSTEM1" });
      expect(again.data).toMatchObject({ publishPending: { published: 9, cursor: 13 } });
      expect(await stats()).toEqual({ system: "SYSTEM1", sourceRows: 9, published: 9, inFlight: 9 });

      await gql(SEED, { system: "SYSTEM1", count: 2 });
      await gql(PUBLISH, { system: "SYSTEM1" });
      expect(await stats()).toEqual({ system: "SYSTEM1", sourceRows: 11, published: 11, inFlight: 11 });
      expect(await drainPrimary()).toHaveLength(20);
    } finally {
      await client.end();
    }
  });

  it("counts a cursor recorded before the published count as the rows up to it", async () => {
    await gql(SEED, { system: "SYSTEM2", count: 5 });
    await env.sources.SYSTEM2.order.delete({ where: { id: 1 } });
    await env.redis.set(cursorKey(env.config, "SYSTEM2"), "3");
    const published = async () => {
      const r = await gql(
        graphql(`
          {
            pipelineStats {
              systems {
                system
                published
              }
            }
          }
        `),
      );
      return r.data!.pipelineStats.systems.find((s) => s.system === "SYSTEM2")!.published;
    };
    expect(await published()).toBe(2);
    const r = await gql(PUBLISH, { system: "SYSTEM2" });
    expect(r.data).toMatchObject({ publishPending: { published: 2, fromId: 4, toId: 5 } });
    expect(await published()).toBe(4);
  });

  it("resetCursor republishes with the same message ids", async () => {
    await gql(SEED, { system: "SYSTEM1", count: 20 });
    await gql(PUBLISH, { system: "SYSTEM1" });
    const before = await drainPrimary();
    const reset = await gql(
      graphql(`
        mutation {
          resetCursor(system: SYSTEM1, to: 10) {
            system
            lastPublishedId
            pending
          }
        }
      `),
    );
    expect(reset.data).toEqual({ resetCursor: { system: "SYSTEM1", lastPublishedId: 10, pending: 10 } });
    const again = await gql(PUBLISH, { system: "SYSTEM1" });
    expect(again.data).toMatchObject({ publishPending: { published: 10, fromId: 11, toId: 20 } });
    const after = await drainPrimary();
    expect(after.map((m) => m.messageId)).toEqual(before.slice(10).map((m) => m.messageId));
    const bad = await gql(
      graphql(`
        mutation {
          resetCursor(system: SYSTEM1, to: -1) {
            lastPublishedId
          }
        }
      `),
    );
    expect(bad.errors?.[0]?.extensions?.code).toBe("BAD_USER_INPUT");
  });

  it("stops at a row that breaks the message contract without moving the cursor, and publishes it once fixed", async () => {
    await gql(SEED, { system: "SYSTEM1", count: 10 });
    await gql(PUBLISH, { system: "SYSTEM1" });
    await drainPrimary();
    // Ids 11..14; the contract wants a product of at least one character.
    const db = env.sources.SYSTEM1;
    await db.order.createMany({
      data: ["kept", "kept", "", "kept"].map((product) => ({ product, price: "3.00", securityCheck: true })),
    });

    const failed = await gql(PUBLISH, { system: "SYSTEM1" });
    expect(failed.errors?.[0]?.extensions?.code).toBe("INTERNAL_SERVER_ERROR");
    expect(await env.redis.get(cursorKey(env.config, "SYSTEM1"))).toBe("10");

    await db.order.update({ where: { id: 13 }, data: { product: "fixed" } });
    const fixed = await gql(PUBLISH, { system: "SYSTEM1" });
    expect(fixed.data).toMatchObject({ publishPending: { published: 4, fromId: 11, toId: 14, cursor: 14 } });
    // Rows sent before the failure go out again with the same message ids; the consumer deduplicates them.
    const msgs = await drainPrimary();
    expect(new Set(msgs.map((m) => m.message.source.orderId))).toEqual(new Set([11, 12, 13, 14]));
    expect(msgs.find((m) => m.message.source.orderId === 13)?.message.order.product).toBe("fixed");
    for (const m of msgs) expect(m.messageId).toBe(m.message.messageId);
  });

  it("keeps publishing after a channel error closes the publish channel", async () => {
    // Publishing to an exchange that does not exist makes the broker close the channel.
    await expect(env.broker.publish("no-such-exchange", "x", Buffer.from("{}"), {})).rejects.toThrow();
    await gql(SEED, { system: "SYSTEM1", count: 3 });
    const r = await waitFor(
      () => gql(PUBLISH, { system: "SYSTEM1" }),
      (res) => !res.errors,
      5000,
    );
    expect(r.data).toMatchObject({ publishPending: { published: 3 } });
    expect(await drainPrimary()).toHaveLength(3);
  });

  it("fails with a clear error naming the broker when it is unreachable, and keeps the cursor", async () => {
    await gql(SEED, { system: "SYSTEM1", count: 10 });
    await env.broker.close();
    const r = await gql(PUBLISH, { system: "SYSTEM1" });
    expect(r.errors?.[0]?.extensions?.code).toBe("DEPENDENCY_UNAVAILABLE");
    expect(r.errors?.[0]?.extensions?.dependency).toBe("rabbitmq");
    expect(r.errors?.[0]?.message).toMatch(/rabbitmq is unavailable/);
    expect(await env.redis.get(cursorKey(env.config, "SYSTEM1"))).toBeNull();
  });

  it("fails with a clear error naming the database when it is unreachable", async () => {
    const down = await createTestEnv({ SYSTEM2_DATABASE_URL: "postgresql://postgres:postgres@127.0.0.1:1/system2" });
    const downGql = typedGql(() => down);
    try {
      const r = await downGql(PUBLISH, { system: "SYSTEM2" });
      expect(r.errors?.[0]?.extensions?.code).toBe("DEPENDENCY_UNAVAILABLE");
      expect(r.errors?.[0]?.extensions?.dependency).toBe("postgresql");
      expect(await down.redis.get(cursorKey(down.config, "SYSTEM2"))).toBeNull();
      // The other system is unaffected.
      const ok = await downGql(PUBLISH, { system: "SYSTEM1" });
      expect(ok.data).toMatchObject({ publishPending: { published: 0 } });
    } finally {
      await down.cleanup();
    }
  });
});
