// The read side over a real pipeline run: history, search, stats, dead letters,
// redrive and live subscriptions (SSE and graphql-ws).
import { randomUUID } from "node:crypto";

import { print } from "graphql";
import { createClient } from "graphql-ws";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";

import type { LogDocument } from "../common/attempt-log.ts";
import { graphql, type ResultOf } from "../gateway/client/graphql.ts";
import { PIPELINE_STATS } from "../gateway/client/operations.ts";
import { createTestEnv, type RunningConsumer, serveGateway, type TestEnv, waitFor } from "./support/env.ts";
import { typedGql } from "./typed-gql.ts";

let env: TestEnv;
let consumer: RunningConsumer;
let base = "";
const gql = typedGql(() => env);

type Data<T> = { data?: T; errors?: { message: string; extensions?: Record<string, unknown> }[] };

beforeAll(async () => {
  env = await createTestEnv({ RETRY_DELAY_MS: "100", MAX_ATTEMPTS: "3" });
  consumer = await env.startConsumer();
  ({ base } = await serveGateway(env));
  await gql(
    graphql(`
      mutation {
        a: seedOrders(system: SYSTEM1, count: 40) {
          inserted
        }
        b: seedOrders(system: SYSTEM2, count: 30) {
          inserted
        }
      }
    `),
  );
  await gql(
    graphql(`
      mutation {
        a: publishPending(system: SYSTEM1) {
          published
        }
        b: publishPending(system: SYSTEM2) {
          published
        }
      }
    `),
  );
  await env.drained();
});

afterAll(async () => {
  await env.cleanup();
});

describe("attempt log queries", () => {
  it("messageHistory returns a message's attempts in order, [] for an unknown id, and a typed error for a malformed one", async () => {
    const doc = await env.log.collection.findOne({ status: "DEAD_LETTERED" });
    expect(doc).not.toBeNull();
    const r = await gql(
      graphql(`
        query ($id: ID!) {
          messageHistory(messageId: $id) {
            attempt
            status
            system
            orderId
          }
        }
      `),
      {
        id: doc!.messageId,
      },
    );
    expect(r.data!.messageHistory.map((h) => [h.attempt, h.status])).toEqual([
      [1, "RETRY_SCHEDULED"],
      [2, "RETRY_SCHEDULED"],
      [3, "DEAD_LETTERED"],
    ]);
    const unknown = await gql(
      graphql(`
        {
          messageHistory(messageId: "00000000-0000-4000-8000-000000000000") {
            attempt
          }
        }
      `),
    );
    expect(unknown.data).toEqual({ messageHistory: [] });
    const bad = await gql(
      graphql(`
        {
          messageHistory(messageId: "nope") {
            attempt
          }
        }
      `),
    );
    expect(bad.errors?.[0]?.extensions?.code).toBe("BAD_USER_INPUT");
  });

  it("gives each entry its publish time, from entries logged now and by earlier versions alike", async () => {
    const logged = await env.log.collection.findOne({ status: "SUCCEEDED" });
    const publishedAt = new Date("2026-01-02T03:04:05.000Z");
    const messageId = randomUUID();
    const { publishedAt: _now, ...earlier } = { ...logged!, _id: undefined, messageId, attempt: 2 };
    await env.log.insert([
      { ...logged!, _id: undefined, messageId, attempt: 1, publishedAt },
      // An entry of an earlier version: the publish time nested under `source`, beside system and orderId.
      { ...earlier, source: { system: logged!.system, orderId: logged!.orderId, publishedAt } } as unknown as LogDocument,
    ]);
    const q = graphql(`
      query ($id: ID!) {
        messageHistory(messageId: $id) {
          attempt
          publishedAt
        }
      }
    `);
    // Taken out again: the later tests reconcile the log against the run.
    try {
      const r = await gql(q, { id: messageId });
      expect(r.data!.messageHistory).toEqual([
        { attempt: 1, publishedAt: publishedAt.toISOString() },
        { attempt: 2, publishedAt: publishedAt.toISOString() },
      ]);
    } finally {
      await env.log.collection.deleteMany({ messageId });
    }
    const run = await gql(q, { id: logged!.messageId });
    expect(run.data!.messageHistory[0]!.publishedAt).toEqual(expect.stringMatching(/^\d{4}-/));
  });

  it("messages filters by system, status and order id, newest first, with forward paging", async () => {
    const q = graphql(`
      query ($system: System, $status: ProcessingStatus, $orderId: Int, $first: Int, $after: String) {
        messages(system: $system, status: $status, orderId: $orderId, first: $first, after: $after) {
          edges {
            cursor
            node {
              system
              status
              orderId
              processedAt
            }
          }
          pageInfo {
            hasNextPage
            endCursor
          }
        }
      }
    `);
    const total = await env.log.collection.countDocuments({ system: "SYSTEM2", status: "SUCCEEDED" });
    expect(total).toBeGreaterThan(5);
    const seen: string[] = [];
    let after: string | null | undefined;
    for (;;) {
      const r = await gql(q, { system: "SYSTEM2", status: "SUCCEEDED", first: 5, after });
      expect(r.errors).toBeUndefined();
      for (const e of r.data!.messages.edges) {
        expect(e.node.system).toBe("SYSTEM2");
        expect(e.node.status).toBe("SUCCEEDED");
        seen.push(e.cursor);
      }
      if (!r.data!.messages.pageInfo.hasNextPage) break;
      after = r.data!.messages.pageInfo.endCursor;
    }
    expect(seen).toHaveLength(total);
    expect(new Set(seen).size).toBe(total);
    const one = await gql(q, { system: "SYSTEM1", orderId: 7 });
    expect(one.data!.messages.edges.length).toBeGreaterThanOrEqual(1);
    expect(one.data!.messages.edges.every((e) => e.node.orderId === 7 && e.node.system === "SYSTEM1")).toBe(true);
    const bad = await gql(q, { first: 501 });
    expect(bad.errors?.[0]?.extensions?.code).toBe("BAD_USER_INPUT");
    const badCursor = await gql(q, { after: "bm9wZQ" });
    expect(badCursor.errors?.[0]?.extensions?.code).toBe("BAD_USER_INPUT");
  });

  // One lookup of the log for the whole page, not one per resolver call; the log itself then
  // asks the server one indexed question per order where $in is not served from an index (FerretDB).
  it("Order.history loads a whole page of orders with one log lookup", async () => {
    const historyForOrders = env.log.historyForOrders.bind(env.log);
    const calls: number[] = [];
    env.log.historyForOrders = (keys) => {
      calls.push(keys.length);
      return historyForOrders(keys);
    };
    try {
      const r = await gql(
        graphql(`
          {
            orders(system: SYSTEM1, first: 20) {
              totalCount
              edges {
                node {
                  id
                  securityCheck
                  history {
                    status
                    attempt
                  }
                }
              }
            }
          }
        `),
      );
      expect(r.errors).toBeUndefined();
      expect(r.data!.orders.totalCount).toBe(40);
      expect(r.data!.orders.edges).toHaveLength(20);
      for (const { node } of r.data!.orders.edges) {
        expect(node.history.length).toBeGreaterThanOrEqual(1);
        expect(node.history.at(-1)!.status).toBe(node.securityCheck ? "SUCCEEDED" : "DEAD_LETTERED");
      }
      expect(calls).toEqual([20]);
    } finally {
      env.log.historyForOrders = historyForOrders;
    }
  });
});

describe("paging arguments", () => {
  type Errors = { errors?: { message: string; extensions?: Record<string, unknown> }[] };
  const refusal = async (query: string, variables?: Record<string, unknown>) => {
    const r: Errors = await env.gql(query, variables);
    expect(r.errors, query).toHaveLength(1);
    return r.errors![0]!.extensions;
  };

  it("refuses a bad first, last, after or before whatever the query selects", async () => {
    // The selections that skip the edges: totalCount alone, __typename alone, pageInfo alone.
    const selections = ["{ totalCount }", "{ __typename }", "{ pageInfo { hasNextPage } }", "{ edges { cursor } }"];
    const endputCursor = Buffer.from("EndputOrder:1").toString("base64url");
    const orderCases: [string, Record<string, unknown>, string][] = [
      ["$first: Int", { first: 0 }, "first"],
      ["$first: Int", { first: -1 }, "first"],
      ["$first: Int", { first: 501 }, "first"],
      ["$first: Int", { first: 2147483647 }, "first"],
      ["$last: Int", { last: 0 }, "last"],
      ["$last: Int", { last: 100000 }, "last"],
      ["$after: String", { after: "bm9wZQ" }, "after"],
      ["$after: String", { after: endputCursor }, "after"],
      ["$before: String", { before: "not a cursor" }, "before"],
    ];
    for (const selection of selections) {
      for (const [decl, vars, field] of orderCases) {
        const arg = Object.keys(vars)[0]!;
        const q = `query (${decl}) { orders(system: SYSTEM1, ${arg}: $${arg}) ${selection} }`;
        expect(await refusal(q, vars), `${q} ${JSON.stringify(vars)}`).toEqual({ code: "BAD_USER_INPUT", field });
      }
    }
    const first = await gql(
      graphql(`
        {
          orders(system: SYSTEM1, first: 1) {
            edges {
              cursor
            }
          }
        }
      `),
    );
    const cursor = first.data!.orders.edges[0]!.cursor;
    expect(
      await refusal(`query ($c: String) { orders(system: SYSTEM1, after: $c, before: $c) { totalCount } }`, { c: cursor }),
    ).toMatchObject({ code: "BAD_USER_INPUT" });
    expect(
      await refusal(`query ($c: String) { orders(system: SYSTEM1, first: 2, before: $c) { totalCount } }`, { c: cursor }),
    ).toMatchObject({ code: "BAD_USER_INPUT" });

    // The other connections and the dead-letter list check theirs in the same cases.
    for (const selection of selections) {
      for (const field of ["endputOrders", "messages"]) {
        if (field === "messages" && selection === "{ totalCount }") continue;
        for (const n of [0, -1, 501]) {
          expect(await refusal(`{ ${field}(first: ${n}) ${selection} }`)).toEqual({ code: "BAD_USER_INPUT", field: "first" });
        }
        expect(await refusal(`{ ${field}(after: "bm9wZQ") ${selection} }`)).toEqual({ code: "BAD_USER_INPUT", field: "after" });
        expect(await refusal(`{ ${field}(last: 3) ${selection} }`)).toMatchObject({ code: "BAD_USER_INPUT" });
      }
    }
    expect(await refusal(`{ deadLetters(first: 0) { messageId } }`)).toEqual({ code: "BAD_USER_INPUT", field: "first" });
  });

  it("still pages orders forward and backward with good arguments", async () => {
    const q = graphql(`
      query ($first: Int, $after: String, $last: Int, $before: String) {
        orders(system: SYSTEM1, first: $first, after: $after, last: $last, before: $before) {
          totalCount
          edges {
            cursor
            node {
              id
            }
          }
        }
      }
    `);
    const all = await env.sources.SYSTEM1.order.findMany({ orderBy: { id: "asc" }, select: { id: true } });
    const one = await gql(q, { first: 5 });
    expect(one.errors).toBeUndefined();
    expect(one.data!.orders.totalCount).toBe(all.length);
    expect(one.data!.orders.edges.map((e) => e.node.id)).toEqual(all.slice(0, 5).map((o) => o.id));
    const two = await gql(q, { first: 500, after: one.data!.orders.edges[4]!.cursor });
    expect(two.data!.orders.edges.map((e) => e.node.id)).toEqual(all.slice(5).map((o) => o.id));
    const back = await gql(q, { last: 3, before: two.data!.orders.edges[0]!.cursor });
    expect(back.data!.orders.edges.map((e) => e.node.id)).toEqual(all.slice(2, 5).map((o) => o.id));
    const count = await gql(
      graphql(`
        {
          orders(system: SYSTEM1, first: 500) {
            totalCount
          }
        }
      `),
    );
    expect(count.data!.orders.totalCount).toBe(all.length);
  });
});

describe("pipelineStats", () => {
  it("reconciles each system and reports queue depths", async () => {
    const r = await gql(PIPELINE_STATS);
    expect(r.errors).toBeUndefined();
    const s = r.data!.pipelineStats;
    const topo = env.broker.topology;
    expect(s.queues.map((q) => q.name)).toEqual([topo.primary, ...topo.waitQueues.map((w) => w.name), topo.dlq]);
    expect(s.queues.find((q) => q.name === topo.primary)).toEqual({ name: topo.primary, messages: 0, consumers: 1 });
    const dlqDepth = s.queues.find((q) => q.name === topo.dlq)!.messages;
    for (const sys of s.systems) {
      const system = sys.system;
      const trueRows = await env.sources[system].order.count({ where: { securityCheck: true } });
      // Counted here, apart from the gateway's own reading: the sink's rows and the log's successes.
      const sunk = await env.endput.endputOrder.count({ where: { sourceSystem: system } });
      const loggedSuccesses = await env.log.collection.countDocuments({ system, status: "SUCCEEDED" });
      expect(sunk).toBe(trueRows);
      expect(sys.sourceRows).toBe(system === "SYSTEM1" ? 40 : 30);
      expect(sys.published).toBe(sys.sourceRows);
      expect(sys.endputRows).toBe(sunk);
      expect(sys.succeeded).toBe(loggedSuccesses);
      expect(sys.deadLettered).toBe(sys.sourceRows - trueRows);
      expect(sys.inFlight).toBe(0);
    }
    expect(dlqDepth).toBe(s.systems.reduce((n, x) => n + x.deadLettered, 0));
    const logged = await env.log.collection.countDocuments({ status: "SUCCEEDED" });
    expect(s.attempts.find((a) => a.status === "SUCCEEDED")!.count).toBe(logged);
  });
});

describe("dead letters", () => {
  it("peeks without consuming and redrives by filter, dry run first", async () => {
    const topo = env.broker.topology;
    const depth = await env.queueDepth(topo.dlq);
    const peek = await gql(
      graphql(`
        {
          deadLetters(first: 500) {
            messageId
            system
            orderId
            reason
            attempts
          }
        }
      `),
    );
    expect(peek.data!.deadLetters).toHaveLength(depth);
    expect(await env.queueDepth(topo.dlq)).toBe(depth);
    for (const d of peek.data!.deadLetters) expect([d.reason, d.attempts]).toEqual(["max-attempts", 3]);

    const system2 = peek.data!.deadLetters.filter((d) => d.system === "SYSTEM2").length;
    const dry = await gql(
      graphql(`
        mutation {
          redriveDeadLetters(system: SYSTEM2, dryRun: true) {
            matched
            moved
            dryRun
          }
        }
      `),
    );
    expect(dry.data).toEqual({ redriveDeadLetters: { matched: system2, moved: 0, dryRun: true } });
    expect(await env.queueDepth(topo.dlq)).toBe(depth);

    const target = peek.data!.deadLetters.find((d) => d.system === "SYSTEM1")!;
    const one = await gql(
      graphql(`
        mutation ($ids: [ID!]) {
          redriveDeadLetters(messageIds: $ids) {
            matched
            moved
            dryRun
          }
        }
      `),
      {
        ids: [target.messageId],
      },
    );
    expect(one.data).toEqual({ redriveDeadLetters: { matched: 1, moved: 1, dryRun: false } });
    await env.drained();
    // The redriven message ran a new round and, being a false order, dead-lettered again.
    const history = await gql(
      graphql(`
        query ($id: ID!) {
          messageHistory(messageId: $id) {
            round
            attempt
            status
          }
        }
      `),
      {
        id: target.messageId,
      },
    );
    expect(history.data!.messageHistory.map((h) => [h.round, h.attempt, h.status])).toEqual([
      [0, 1, "RETRY_SCHEDULED"],
      [0, 2, "RETRY_SCHEDULED"],
      [0, 3, "DEAD_LETTERED"],
      [1, 0, "REDRIVEN"],
      [1, 1, "RETRY_SCHEDULED"],
      [1, 2, "RETRY_SCHEDULED"],
      [1, 3, "DEAD_LETTERED"],
    ]);
    expect(await env.queueDepth(topo.dlq)).toBe(depth);
    const redrives = await env.log.collection.db.collection("redrives").find({}).toArray();
    expect(redrives.map((r) => [r.matched, r.moved, r.dryRun])).toEqual([
      [system2, 0, true],
      [1, 1, false],
    ]);

    const limited = await gql(
      graphql(`
        mutation {
          redriveDeadLetters(limit: 2, reason: "max-attempts") {
            matched
            moved
          }
        }
      `),
    );
    expect(limited.data).toEqual({ redriveDeadLetters: { matched: 2, moved: 2 } });
    const none = await gql(
      graphql(`
        mutation {
          redriveDeadLetters(reason: "no-such-reason") {
            matched
            moved
          }
        }
      `),
    );
    expect(none.data).toEqual({ redriveDeadLetters: { matched: 0, moved: 0 } });
    const bad = await gql(
      graphql(`
        mutation {
          redriveDeadLetters(limit: 0) {
            matched
          }
        }
      `),
    );
    expect(bad.errors?.[0]?.extensions?.code).toBe("BAD_USER_INPUT");
    await env.drained();
  });
});

describe("subscriptions", () => {
  async function seedAndPublish(count: number) {
    await gql(
      graphql(`
        mutation ($n: Int!) {
          seedOrders(system: SYSTEM2, count: $n, securityCheckRatio: 1) {
            inserted
          }
        }
      `),
      {
        n: count,
      },
    );
    await gql(
      graphql(`
        mutation {
          publishPending(system: SYSTEM2) {
            published
          }
        }
      `),
    );
  }

  it("streams filtered events over graphql-ws", async () => {
    const client = createClient({ url: `${base.replace("http", "ws")}/graphql`, webSocketImpl: WebSocket, lazy: false });
    const EVENTS = graphql(`
      subscription {
        processingEvents(system: SYSTEM2, status: SUCCEEDED) {
          system
          status
          orderId
          attempt
          at
          messageId
        }
      }
    `);
    const events: ResultOf<typeof EVENTS>["processingEvents"][] = [];
    const done = new Promise<void>((resolve, reject) => {
      const unsubscribe = client.subscribe<ResultOf<typeof EVENTS>>(
        { query: print(EVENTS) },
        {
          next: (v) => {
            events.push(v.data!.processingEvents);
            if (events.length >= 5) {
              unsubscribe();
              resolve();
            }
          },
          error: reject,
          complete: () => resolve(),
        },
      );
    });
    await new Promise((r) => setTimeout(r, 300));
    await seedAndPublish(5);
    await done;
    await client.dispose();
    expect(events).toHaveLength(5);
    for (const e of events) expect([e.system, e.status]).toEqual(["SYSTEM2", "SUCCEEDED"]);
    await env.drained();
  });

  it("streams events over SSE", async () => {
    const EVENTS = graphql(`
      subscription {
        processingEvents(status: SUCCEEDED) {
          system
          status
          orderId
        }
      }
    `);
    const controller = new AbortController();
    const res = await fetch(`${base}/graphql`, {
      method: "POST",
      headers: { "content-type": "application/json", accept: "text/event-stream" },
      body: JSON.stringify({ query: print(EVENTS) }),
      signal: controller.signal,
    });
    expect(res.headers.get("content-type")).toMatch(/text\/event-stream/);
    const reader = res.body!.getReader();
    const received: Data<ResultOf<typeof EVENTS>>[] = [];
    const reading = (async () => {
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buf += new TextDecoder().decode(value);
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const chunk = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const data = chunk.split("\n").find((l) => l.startsWith("data:"));
          if (data && data.length > 6) received.push(JSON.parse(data.slice(5)));
        }
        if (received.length >= 3) return;
      }
    })();
    await new Promise((r) => setTimeout(r, 300));
    await seedAndPublish(3);
    await waitFor(
      async () => received.length,
      (n) => n >= 3,
    );
    controller.abort();
    await reading.catch(() => undefined);
    for (const r of received) expect(r.data!.processingEvents.status).toBe("SUCCEEDED");
    await env.drained();
    expect(consumer.consumer.ready()).toBe(true);
  });
});
