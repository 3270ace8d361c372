// AMQP_URL as a list of nodes: the broker connection takes the next node when
// one refuses or goes away, without a new process. Node 1 is a TCP relay to the
// real broker that the test can take away; node 2 is the broker itself.
import { randomUUID } from "node:crypto";
import net from "node:net";

import amqp from "amqplib";
import { afterEach, describe, expect, it } from "vitest";

import { type Broker, createBroker, nodeName } from "../common/broker.ts";
import { readConfig, readConfigWith } from "../common/config.ts";
import { createLogger } from "../common/logger.ts";

const BROKER = readConfig().broker.url;

interface Relay {
  url: string;
  /** Connections the relay has accepted so far. */
  accepted(): number;
  /** Stops listening and cuts every relayed connection, as a node that dies does. */
  kill(): Promise<void>;
}

async function startRelay(): Promise<Relay> {
  const target = new URL(BROKER);
  const sockets = new Set<net.Socket>();
  let accepted = 0;
  const server = net.createServer((client) => {
    accepted++;
    const upstream = net.connect(Number(target.port || 5672), target.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("error", () => undefined);
      s.on("close", () => sockets.delete(s));
    }
    client.pipe(upstream).pipe(client);
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  const url = new URL(BROKER);
  url.hostname = "127.0.0.1";
  url.port = String(port);
  return {
    url: url.toString().replace(/\/$/, ""),
    accepted: () => accepted,
    kill: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sockets) s.destroy();
      await closed;
    },
  };
}

async function closedPortUrl(): Promise<string> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `amqp://guest:guest@127.0.0.1:${port}`;
}

async function primaryDepth(queue: string): Promise<number> {
  const conn = await amqp.connect(BROKER);
  try {
    const ch = await conn.createChannel();
    return (await ch.checkQueue(queue)).messageCount;
  } finally {
    await conn.close();
  }
}

const opened: Broker[] = [];
const relays: Relay[] = [];
afterEach(async () => {
  for (const b of opened.splice(0)) {
    await b
      .withChannel(async (ch) => {
        await ch.deleteQueue(b.topology.primary);
        await ch.deleteQueue(b.topology.dlq);
        await ch.deleteExchange(b.topology.exchange);
      })
      .catch(() => undefined);
    await b.close();
  }
  for (const r of relays.splice(0)) await r.kill();
});

function open(urls: string[]): Broker {
  const config = readConfigWith({ AMQP_URL: urls.join(","), AMQP_PREFIX: `test-failover-${randomUUID().slice(0, 8)}` });
  const broker = createBroker({ config, logger: createLogger(readConfig({ LOG_LEVEL: "silent" }), "test"), name: "test" });
  opened.push(broker);
  return broker;
}

const publishOne = (b: Broker) => b.publish(b.topology.exchange, b.topology.routingKey, Buffer.from("{}"), { persistent: true });

describe("broker connection over several nodes", () => {
  it("connects to the next node when the first refuses", async () => {
    const broker = open([await closedPortUrl(), BROKER]);
    await broker.ready();
    await publishOne(broker);
    expect(await primaryDepth(broker.topology.primary)).toBe(1);
  });

  it("moves to the next node when its node goes away, and runs the connect hooks there", async () => {
    const relay = await startRelay();
    relays.push(relay);
    const broker = open([relay.url, BROKER]);
    const connects: number[] = [];
    broker.onConnect(async () => void connects.push(relay.accepted()));
    await broker.ready();
    // The main connection (and its hooks) went through node 1.
    expect(connects).toEqual([1]);
    await publishOne(broker);

    await relay.kill();
    const deadline = Date.now() + 15_000;
    while (connects.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    // Reconnected to node 2: the hooks ran again, and node 1 was not asked again (it is gone).
    expect(connects).toEqual([1, 1]);
    expect(broker.isConnected()).toBe(true);
    await publishOne(broker);
    expect(await primaryDepth(broker.topology.primary)).toBe(2);
  });

  it("names a node by host and port only", () => {
    expect(nodeName("amqp://user:secret@rabbit-2:5673/vhost")).toBe("rabbit-2:5673");
    expect(nodeName("amqps://user:secret@rabbit-3")).toBe("rabbit-3:5671");
  });
});
