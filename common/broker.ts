// One AMQP connection per process that reconnects by itself (broker-nodes.ts: which node, and
// failing over between them). Publishing goes through one confirm channel on it
// (broker-publish.ts); management work through a connection of its own (broker-management.ts).
import type { Channel, ChannelModel, ConfirmChannel, Options } from "amqplib";

import { createManagementConnection } from "./broker-management.ts";
import { createNodeDialer, createReconnectLoop, nodeName } from "./broker-nodes.ts";
import { createConfirmPublish, openPublisher, type PublisherSlot } from "./broker-publish.ts";
import type { Config } from "./config.ts";
import { DependencyError, errorMessage } from "./errors.ts";
import type { Logger } from "./logger.ts";
import { assertTopology, makeTopology, type Topology } from "./topology.ts";

export { nodeName } from "./broker-nodes.ts";

export interface Broker {
  readonly topology: Topology;
  /** Resolves once connected for the first time (or rejects when closed first). */
  ready(): Promise<void>;
  isConnected(): boolean;
  /** Publishes a new copy (fresh copy id) on the shared confirm channel; resolves when the broker confirms. */
  publish(exchange: string, routingKey: string, content: Buffer, options: Options.Publish): Promise<void>;
  /** Runs after every (re)connect with a fresh connection; consumers start here. */
  onConnect(fn: (connection: ChannelModel) => Promise<void>): void;
  /**
   * A short-lived channel for management work (peeking, counting), on a connection
   * of its own: the broker's flow control, which throttles a busy publisher's
   * connection as a whole, does not hold these calls up.
   */
  withChannel<T>(fn: (channel: Channel) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

export function createBroker(opts: { config: Config; logger: Logger; name: string; waitQueues?: boolean }): Broker {
  const { config, logger } = opts;
  const topology = makeTopology(config);
  const dialer = createNodeDialer(config.broker.urls, opts.name);
  const management = createManagementConnection(dialer, logger);
  let connection: ChannelModel | undefined;
  let publisher: ConfirmChannel | undefined;
  let closing = false;
  const hooks: ((c: ChannelModel) => Promise<void>)[] = [];
  const abort = new AbortController();
  let resolveReady!: () => void;
  let rejectReady!: (e: Error) => void;
  const readyPromise = new Promise<void>((res, rej) => ((resolveReady = res), (rejectReady = rej)));
  readyPromise.catch(() => undefined);
  const slotOf = (conn: ChannelModel): PublisherSlot => ({
    get: () => publisher,
    set: (ch) => (publisher = ch),
    live: () => !closing && connection === conn,
  });

  async function connectOnce(): Promise<void> {
    const conn = await dialer.connect("");
    conn.on("error", (err: Error) => logger.warn({ err: errorMessage(err) }, "rabbitmq connection error"));
    const ch = await openPublisher(conn, slotOf(conn), logger);
    await assertTopology(ch, topology, config, { waitQueues: opts.waitQueues ?? false });
    connection = conn;
    publisher = ch;
    conn.on("close", () => {
      if (connection === conn) {
        connection = undefined;
        publisher = undefined;
      }
      if (!closing) {
        // The node went away (or dropped us): the next node is the likelier to answer.
        dialer.advance();
        logger.warn({ next: nodeName(dialer.current()) }, "rabbitmq connection lost; reconnecting");
        void loop();
      }
    });
    for (const hook of hooks) await hook(conn);
  }

  /** Forgets the main connection and closes it. */
  async function drop(): Promise<void> {
    const conn = connection;
    connection = undefined;
    publisher = undefined;
    await conn?.close().catch(() => undefined);
  }

  const loop = createReconnectLoop({
    dialer,
    attempt: connectOnce,
    failed: drop,
    connected: () => {
      logger.info({ primary: topology.primary, node: nodeName(dialer.current()) }, "rabbitmq connected");
      resolveReady();
    },
    closing: () => closing,
    signal: abort.signal,
    nodes: config.broker.urls.length,
    logger,
  });
  void loop();

  return {
    topology,
    ready: () => readyPromise,
    isConnected: () => connection !== undefined,
    onConnect(fn) {
      hooks.push(fn);
      if (connection) void fn(connection).catch((err) => logger.error({ err: errorMessage(err) }, "rabbitmq setup failed"));
    },
    publish: createConfirmPublish(() => publisher),
    async withChannel(fn) {
      if (!connection) throw new DependencyError("rabbitmq", "not connected");
      return management.withChannel(fn);
    },
    async close() {
      closing = true;
      abort.abort();
      rejectReady(new Error("broker closed"));
      await Promise.all([drop(), management.close()]);
    },
  };
}
