// Live event subscriptions against a real gateway and Redis: a subscriber that falls behind is
// ended with an error instead of taking the gateway down, and a client may hold only so many.
import { type Client, createClient } from "graphql-ws";
import { afterEach, describe, expect, it } from "vitest";
import WebSocket from "ws";

import { eventsTopic, type ProcessingEvent } from "../common/events.ts";
import { createTestEnv, type Overrides, serveGateway, type TestEnv, waitFor } from "./support/env.ts";
import { stalledSubscriber } from "./support/stalled-subscriber.ts";

let env: TestEnv | undefined;
let port = 0;
const clients: Client[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.dispose()));
  await env?.cleanup();
  env = undefined;
});

async function start(overrides: Overrides = {}) {
  env = await createTestEnv(overrides);
  ({ port } = await serveGateway(env));
  return env;
}

const QUERY = "subscription { processingEvents { messageId system orderId attempt round status error at } }";

function event(i: number): ProcessingEvent {
  return {
    messageId: `00000000-0000-4000-8000-${String(i).padStart(12, "0")}`,
    system: "SYSTEM1",
    orderId: i + 1,
    attempt: 1,
    round: 0,
    status: "RETRY_SCHEDULED",
    at: new Date().toISOString(),
    error: "simulated failure of the downstream system",
  };
}

/** Publishes events on the channel the consumers publish on, in pipelines of 1,000. */
async function publishEvents(e: TestEnv, from: number, count: number) {
  for (let i = from; i < from + count; i += 1000) {
    const p = e.redis.pipeline();
    for (let j = i; j < Math.min(from + count, i + 1000); j++) p.publish(eventsTopic(e.config), JSON.stringify(event(j)));
    await p.exec();
  }
}

/** Waits until the gateway listens on the events channel for `n` subscribers' worth (one Redis subscription). */
const gatewayListening = (e: TestEnv) =>
  waitFor(
    async () => Number((await e.redis.pubsub("NUMSUB", eventsTopic(e.config)))[1]),
    (n) => n === 1,
    5000,
  );

/** Waits until `cond` holds. */
const until = (cond: () => boolean, timeoutMs: number) =>
  waitFor(
    async () => cond(),
    (v) => v,
    timeoutMs,
  );

/** A graphql-ws client; from `localAddress`, another client as the gateway counts them (every loopback address reaches it). */
function wsClient(localAddress?: string): Client {
  const webSocketImpl = localAddress
    ? class extends WebSocket {
        constructor(url: string, protocols?: string | string[]) {
          super(url, protocols, { localAddress });
        }
      }
    : WebSocket;
  const c = createClient({ url: `ws://127.0.0.1:${port}/graphql`, webSocketImpl, retryAttempts: 0, lazy: false });
  clients.push(c);
  return c;
}

/** Subscribes and records what arrives: events, then errors or the end. */
function subscribe(c: Client) {
  const got = { events: 0, errors: [] as { message: string; extensions?: { code?: string } }[], completed: false, failed: "" };
  const unsubscribe = c.subscribe<{ processingEvents: ProcessingEvent }>(
    { query: QUERY },
    {
      next: (r) => {
        if (r.errors?.length) got.errors.push(...(r.errors as never[]));
        else if (r.data?.processingEvents) got.events++;
      },
      error: (err) => (got.failed = String((err as Error).message ?? JSON.stringify(err))),
      complete: () => (got.completed = true),
    },
  );
  return { got, unsubscribe };
}

/**
 * Subscribes on `c` until the gateway takes the subscription (it may not have seen another end
 * yet) and an event published from number `from` on reaches it.
 */
async function subscribesAgain(e: TestEnv, c: Client, from: number) {
  let again = subscribe(c);
  let next = from;
  await waitFor(
    async () => {
      if (again.got.errors.length) again = subscribe(c);
      await publishEvents(e, next++, 1);
      return again.got.events;
    },
    (n) => n > 0,
    10_000,
  );
}

describe("live event subscriptions", () => {
  it("ends a subscriber that stops reading with SUBSCRIBER_TOO_SLOW, and the gateway keeps serving", async () => {
    const e = await start({ GATEWAY_SUBSCRIPTION_BUFFER: "500" });
    const stalled = await stalledSubscriber(port, "slow", QUERY);
    await gatewayListening(e);

    // Far more than the socket's buffers hold: the gateway's queue for it fills past 500.
    await publishEvents(e, 0, 80_000);
    const res = await fetch(`http://127.0.0.1:${port}/graphql`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ query: "{ __typename }" }),
    });
    expect(await res.json()).toEqual({ data: { __typename: "Query" } });

    stalled.resume();
    await until(stalled.completed, 60_000);
    const mine = stalled.frames();
    const withErrors = mine.filter((f) => f.payload?.errors?.length);
    expect(withErrors).toHaveLength(1);
    expect(withErrors[0]!.payload!.errors![0]!.extensions?.code).toBe("SUBSCRIBER_TOO_SLOW");
    expect(mine.at(-1)!.type).toBe("complete");
    expect(mine.at(-2)).toBe(withErrors[0]);
    expect(mine.length - 2).toBeLessThan(80_000);
    stalled.close();

    // The gateway took its listener off, and a new subscriber gets what comes next.
    const fresh = subscribe(wsClient());
    await gatewayListening(e);
    await publishEvents(e, 100_000, 10);
    await until(() => fresh.got.events === 10, 10_000);
    expect(fresh.got.errors).toEqual([]);
  }, 120_000);

  it("refuses a client's subscriptions past GATEWAY_CLIENT_SUBSCRIPTIONS, and takes one again when one ends", async () => {
    const e = await start({ GATEWAY_CLIENT_SUBSCRIPTIONS: "2" });
    const c = wsClient();
    const first = subscribe(c);
    const second = subscribe(c);
    await gatewayListening(e);
    const third = subscribe(wsClient());
    await until(() => third.got.errors.length > 0 || third.got.failed !== "", 5000);
    expect(third.got.errors.map((x) => x.extensions?.code)).toEqual(["RATE_LIMITED"]);
    expect(third.got.errors[0]!.message).toMatch(/at most 2 subscriptions/);
    expect(third.got.errors[0]!.extensions).toMatchObject({ limit: "client", subscriptions: 2 });

    // Once the gateway has seen the first one end, the client may subscribe again.
    first.unsubscribe();
    await subscribesAgain(e, c, 0);
    expect(second.got.events).toBeGreaterThan(0);
    expect(second.got.errors).toEqual([]);
  }, 60_000);

  it("refuses subscriptions past GATEWAY_MAX_SUBSCRIPTIONS from any client, and takes one again when one ends", async () => {
    const e = await start({ GATEWAY_CLIENT_SUBSCRIPTIONS: "2", GATEWAY_MAX_SUBSCRIPTIONS: "3" });
    const a = wsClient("127.0.0.1");
    const first = subscribe(a);
    subscribe(a);
    const b = wsClient("127.0.0.2");
    const third = subscribe(b);
    await gatewayListening(e);
    await publishEvents(e, 0, 1);
    await until(() => third.got.events === 1, 5000);
    expect(third.got.errors).toEqual([]);

    // B is within its own two, but the gateway holds three.
    const fourth = subscribe(b);
    await until(() => fourth.got.errors.length > 0 || fourth.got.failed !== "", 5000);
    expect(fourth.got.errors.map((x) => x.extensions?.code)).toEqual(["RATE_LIMITED"]);
    expect(fourth.got.errors[0]!.extensions).toMatchObject({ limit: "total", subscriptions: 3 });
    expect(fourth.got.errors[0]!.message).toMatch(/maximum of 3 subscriptions/);

    first.unsubscribe();
    await subscribesAgain(e, b, 1);
    expect(third.got.errors).toEqual([]);
  }, 60_000);
});
