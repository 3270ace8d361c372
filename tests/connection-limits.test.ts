// How many connections the gateway holds: per client address and in all, each refusal an answer
// the client can read, over HTTP and for a WebSocket upgrade alike; and how many operations one
// WebSocket connection may have in flight.
import http from "node:http";
import net from "node:net";

import { afterEach, describe, expect, it } from "vitest";
import WebSocket from "ws";

import { REFUSED_IDLE_MS } from "../gateway/src/connection-limits.ts";
import { createTestEnv, serveGateway, type TestEnv, waitFor } from "./support/env.ts";
import { idleConnection } from "./support/idle-connection.ts";

let env: TestEnv | undefined;
const held: net.Socket[] = [];
afterEach(async () => {
  for (const s of held.splice(0)) s.destroy();
  await env?.cleanup();
  env = undefined;
});

// Every loopback address reaches a server on 127.0.0.1: three "clients" on one machine.
const A = "127.0.0.1";
const B = "127.0.0.2";
const C = "127.0.0.3";

/** Opens a connection from `from` that sends nothing, and keeps it. */
async function hold(port: number, from: string): Promise<net.Socket> {
  const socket = await idleConnection(port, from);
  held.push(socket);
  return socket;
}

interface Answer {
  status: number;
  connection: string | undefined;
  retryAfter: string | undefined;
  text: string;
  body: { errors?: { message: string; extensions?: { code?: string; limit?: string; max?: number } }[] } & Record<
    string,
    unknown
  >;
}

/** One request on a connection of its own from `from`. */
function request(port: number, from: string, path: string, body?: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        port,
        host: "127.0.0.1",
        localAddress: from,
        path,
        agent: false,
        method: body ? "POST" : "GET",
        headers: { "content-type": "application/json" },
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8").on("data", (c: string) => (text += c));
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            connection: res.headers.connection,
            retryAfter: res.headers["retry-after"],
            text,
            body: /json/.test(res.headers["content-type"] ?? "") ? (JSON.parse(text) as Answer["body"]) : {},
          }),
        );
      },
    );
    req.once("error", reject);
    req.end(body);
  });
}

const query = JSON.stringify({ query: "{ __typename }" });

/** A WebSocket handshake from `from`: "open", or the status and body of the refusal. */
function upgrade(port: number, from: string): Promise<{ open: true } | { open: false; status: number; body: Answer["body"] }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/graphql`, "graphql-transport-ws", { localAddress: from });
    // Settled once closed, so that it no longer counts against the limits.
    ws.once("open", () => ws.once("close", () => resolve({ open: true })).close());
    ws.once("unexpected-response", (_req, res) => {
      let text = "";
      res.setEncoding("utf8").on("data", (c: string) => (text += c));
      res.on("end", () => resolve({ open: false, status: res.statusCode ?? 0, body: JSON.parse(text) as Answer["body"] }));
    });
    ws.once("error", reject);
  });
}

const refusal = (a: Answer | { body: Answer["body"] }) => a.body.errors?.[0]?.extensions;

describe("connection limits", () => {
  it("refuses a client's connections past GATEWAY_CLIENT_CONNECTIONS and everyone's past GATEWAY_MAX_CONNECTIONS, with an answer it can read", async () => {
    env = await createTestEnv({ GATEWAY_CLIENT_CONNECTIONS: "3", GATEWAY_MAX_CONNECTIONS: "5" });
    const { port, base } = await serveGateway(env);
    const server = env.gateway.server;
    // Closed connections, as the gateway has seen them: a client's close reaches it a moment later.
    const connections = () => new Promise<number>((resolve) => server.getConnections((_, n) => resolve(n)));

    // A holds its three: its fourth connection is refused, over HTTP and as a WebSocket.
    const fromA = await Promise.all([hold(port, A), hold(port, A), hold(port, A)]);
    const overClient = await request(port, A, "/graphql", query);
    expect(overClient.status).toBe(429);
    expect(overClient.connection).toBe("close");
    expect(overClient.retryAfter).toBe("1");
    expect(refusal(overClient)).toEqual({ code: "TOO_MANY_CONNECTIONS", limit: "client", max: 3 });
    const wsOverClient = await upgrade(port, A);
    expect(wsOverClient.open).toBe(false);
    if (!wsOverClient.open) {
      expect(wsOverClient.status).toBe(429);
      expect(refusal(wsOverClient)).toEqual({ code: "TOO_MANY_CONNECTIONS", limit: "client", max: 3 });
    }
    // Health checks and metrics are answered on any connection: they are how operators see a flood.
    expect((await request(port, A, "/healthz")).status).toBe(200);
    const overLimitMetrics = await request(port, A, "/metrics");
    expect(overLimitMetrics.status).toBe(200);
    expect(overLimitMetrics.text).toMatch(/tentativa_gateway_connections_refused_total\{limit="client"\} 4/);

    // B is another client: served, up to the total of five.
    expect((await request(port, B, "/graphql", query)).body).toEqual({ data: { __typename: "Query" } });
    expect(await upgrade(port, B)).toEqual({ open: true });
    await waitFor(connections, (n) => n === 3, 5_000); // A's three
    await Promise.all([hold(port, B), hold(port, B)]);
    const overTotal = await request(port, C, "/graphql", query);
    expect(overTotal.status).toBe(503);
    expect(refusal(overTotal)).toEqual({ code: "TOO_MANY_CONNECTIONS", limit: "total", max: 5 });

    // A refused connection that sends nothing is closed.
    const idle = await hold(port, C);
    const t0 = Date.now();
    await new Promise((resolve) => idle.once("close", resolve));
    expect(Date.now() - t0).toBeLessThan(REFUSED_IDLE_MS + 2_000);

    // Closing connections makes room again.
    for (const s of fromA) s.destroy();
    await waitFor(connections, (n) => n === 2, 5_000); // B's two
    expect((await request(port, A, "/graphql", query)).status).toBe(200);
    expect(await upgrade(port, A)).toEqual({ open: true });
    await waitFor(connections, (n) => n === 2, 5_000);
    const metrics = await (await fetch(`${base}/metrics`)).text();
    const refused = (limit: string) =>
      Number(metrics.match(new RegExp(`tentativa_gateway_connections_refused_total\\{limit="${limit}"\\} (\\d+)`))?.[1]);
    expect(refused("client")).toBe(4); // the request, the upgrade, the health check and the metrics
    expect(refused("total")).toBe(2);
  });

  it("refuses a WebSocket connection's operations past GATEWAY_CONNECTION_OPERATIONS, and closes one whose refusals pile up unread", async () => {
    env = await createTestEnv({ GATEWAY_CONNECTION_OPERATIONS: "5" });
    const { port, base } = await serveGateway(env);
    const ws = new WebSocket(`ws://127.0.0.1:${port}/graphql`, "graphql-transport-ws");
    const frames: { id?: string; type: string; payload?: { errors?: { extensions?: Record<string, unknown> }[] } }[] = [];
    let closed: { code: number; reason: string } | undefined;
    ws.on("message", (data) => frames.push(JSON.parse(String(data)) as (typeof frames)[number]));
    ws.on("close", (code, reason) => (closed = { code, reason: String(reason) }));
    await new Promise((resolve) => ws.once("open", resolve));
    ws.send(JSON.stringify({ type: "connection_init" }));
    await waitFor(async () => frames.some((f) => f.type === "connection_ack"), Boolean, 5_000);
    const send = (id: string, query: string) => ws.send(JSON.stringify({ id, type: "subscribe", payload: { query } }));

    // Five subscriptions stay in flight: the sixth operation, a plain query, is refused.
    for (let i = 0; i < 5; i++) send(`sub${i}`, "subscription { processingEvents { messageId } }");
    send("q1", "{ __typename }");
    await waitFor(async () => frames.find((f) => f.id === "q1"), Boolean, 5_000);
    const refused = frames.find((f) => f.id === "q1")!;
    expect(refused.type).toBe("error");
    expect(refused.payload).toEqual([
      expect.objectContaining({ extensions: { code: "RATE_LIMITED", limit: "connection", operations: 5 } }),
    ]);
    // One ends, and the next query is served.
    ws.send(JSON.stringify({ id: "sub0", type: "complete" }));
    await waitFor(
      async () => {
        send(`q${frames.length + 2}`, "{ __typename }");
        await new Promise((r) => setTimeout(r, 100));
        return frames.some((f) => f.type === "next" && f.id?.startsWith("q"));
      },
      Boolean,
      5_000,
    );

    // A client that sends without reading: the refusals wait in its socket, and the gateway closes it.
    const socket = (ws as unknown as { _socket: net.Socket })._socket;
    socket.pause();
    // 100,000 refusals are some 25 MB: more than the socket buffers on both sides hold.
    for (let i = 0; i < 100_000; i++) send(`flood${i}`, "{ __typename }");
    await new Promise((r) => setTimeout(r, 2_000));
    socket.resume();
    await waitFor(async () => closed, Boolean, 40_000);
    expect(closed).toEqual({ code: 1008, reason: "too many operations in flight" });
    expect(frames.filter((f) => f.id?.startsWith("flood")).length).toBeLessThan(100_000);
    const res = await fetch(`${base}/graphql`, { method: "POST", headers: { "content-type": "application/json" }, body: query });
    expect(await res.json()).toEqual({ data: { __typename: "Query" } });
  }, 60_000);

  it("answers 408 and closes a connection whose request headers do not arrive within GATEWAY_HEADERS_TIMEOUT_MS", async () => {
    env = await createTestEnv({ GATEWAY_HEADERS_TIMEOUT_MS: "1000" });
    const { port } = await serveGateway(env);
    const slow = await hold(port, A);
    let answer = "";
    slow.setEncoding("utf8").on("data", (c: string) => (answer += c));
    const t0 = Date.now();
    // A byte now and then, never the end of the headers.
    slow.write("POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    const drip = setInterval(() => slow.write("X"), 200);
    await new Promise((resolve) => slow.once("close", resolve));
    clearInterval(drip);
    expect(Date.now() - t0).toBeLessThan(5_000);
    expect(answer).toMatch(/^HTTP\/1\.1 408/);
    // A client that sends its request in time is served.
    expect((await request(port, A, "/graphql", query)).body).toEqual({ data: { __typename: "Query" } });
  });
});
