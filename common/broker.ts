// One AMQP connection per process that reconnects by itself. Publishing while
// the broker is down fails fast with a DependencyError instead of buffering, so
// callers never mistake an unsent message for a sent one. With several nodes
// (a cluster, AMQP_URL as a list) a lost or refused connection moves on to the
// next node at once; the backoff starts only when every node refused.
import { randomUUID } from "node:crypto";

import amqp, { type Channel, type ChannelModel, type ConfirmChannel, type Options } from "amqplib";

import type { Config } from "./config.ts";
import { HEADERS, withNewCopyId } from "./contract.ts";
import { DependencyError, errorMessage, sleep } from "./errors.ts";
import type { Logger } from "./logger.ts";
import { assertTopology, makeTopology, type Topology } from "./topology.ts";

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

/**
 * The headers of one published copy. A frozen headers object (publishPending freezes the one its
 * batch shares) gets a headers object of the broker's own, made once, whose copy id each publish
 * overwrites: amqplib encodes the properties into the frame inside publish(), synchronously, so
 * the object is free again when publish() returns, and a batch allocates no headers per message.
 */
function copyHeaders(): (headers: Options.Publish["headers"]) => Record<string, unknown> {
  const owned = new WeakMap<object, Record<string, unknown>>();
  return (headers) => {
    if (!headers || !Object.isFrozen(headers)) return withNewCopyId(headers);
    const mine = owned.get(headers);
    if (!mine) {
      const fresh = withNewCopyId(headers);
      owned.set(headers, fresh);
      return fresh;
    }
    mine[HEADERS.copyId] = randomUUID();
    return mine;
  };
}

export function createBroker(opts: { config: Config; logger: Logger; name: string; waitQueues?: boolean }): Broker {
  const { config, logger } = opts;
  const topology = makeTopology(config);
  const headersOfCopy = copyHeaders();
  let connection: ChannelModel | undefined;
  let admin: Promise<ChannelModel> | undefined;
  let publisher: ConfirmChannel | undefined;
  let closing = false;
  let drained: Promise<void> | undefined;
  const hooks: ((c: ChannelModel) => Promise<void>)[] = [];
  const abort = new AbortController();
  let resolveReady!: () => void;
  let rejectReady!: (e: Error) => void;
  const readyPromise = new Promise<void>((res, rej) => ((resolveReady = res), (rejectReady = rej)));
  readyPromise.catch(() => undefined);

  /** A channel error closes only the channel: open a new one on the same connection. */
  async function openPublisher(conn: ChannelModel): Promise<ConfirmChannel> {
    const ch = await conn.createConfirmChannel();
    ch.on("error", (err: Error) => logger.warn({ err: errorMessage(err) }, "rabbitmq publish channel error"));
    ch.on("close", () => {
      if (publisher !== ch) return;
      publisher = undefined;
      if (closing || connection !== conn) return;
      openPublisher(conn)
        .then((next) => {
          if (connection === conn && !closing) publisher = next;
          else void next.close().catch(() => undefined);
        })
        .catch((err) => logger.warn({ err: errorMessage(err) }, "rabbitmq publish channel could not be reopened"));
    });
    return ch;
  }

  const urls = config.broker.urls;
  // The node the main connection uses (or tries next): an index into urls.
  let node = 0;

  function connect(role: string, index: number): Promise<ChannelModel> {
    const url = new URL(urls[index % urls.length]!);
    url.searchParams.set("heartbeat", url.searchParams.get("heartbeat") ?? "10");
    return amqp.connect(url.toString(), {
      noDelay: true,
      // A node that is partitioned away accepts nothing: give up on it and try the next.
      timeout: CONNECT_TIMEOUT_MS,
      clientProperties: { connection_name: `${opts.name}${role}@${process.pid}` },
    });
  }

  /** Any live node, starting with the one the main connection uses. */
  async function connectAny(role: string): Promise<ChannelModel> {
    let last: unknown;
    for (let i = 0; i < urls.length; i++) {
      try {
        return await connect(role, node + i);
      } catch (err) {
        last = err;
      }
    }
    throw last;
  }

  /** The management connection, opened on first use and again after it is lost. */
  function adminConnection(): Promise<ChannelModel> {
    admin ??= connectAny("-admin").then(
      (conn) => {
        conn.on("error", (err: Error) => logger.warn({ err: errorMessage(err) }, "rabbitmq management connection error"));
        conn.on("close", () => (admin = undefined));
        return conn;
      },
      (err: unknown) => {
        admin = undefined;
        throw new DependencyError("rabbitmq", errorMessage(err), { cause: err });
      },
    );
    return admin;
  }

  async function connectOnce(): Promise<void> {
    const conn = await connect("", node);
    conn.on("error", (err: Error) => logger.warn({ err: errorMessage(err) }, "rabbitmq connection error"));
    const ch = await openPublisher(conn);
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
        if (urls.length > 1) node = (node + 1) % urls.length;
        logger.warn({ next: nodeName(urls[node]!) }, "rabbitmq connection lost; reconnecting");
        void loop();
      }
    });
    for (const hook of hooks) await hook(conn);
  }

  let looping = false;
  async function loop(): Promise<void> {
    if (looping) return;
    looping = true;
    let delay = 100;
    let failed = 0;
    try {
      while (!closing) {
        try {
          await connectOnce();
          logger.info({ primary: topology.primary, node: nodeName(urls[node]!) }, "rabbitmq connected");
          resolveReady();
          return;
        } catch (err) {
          if (connection) await connection.close().catch(() => undefined);
          connection = undefined;
          publisher = undefined;
          const tried = nodeName(urls[node]!);
          node = (node + 1) % urls.length;
          // Every node refused in turn: back off before the next round.
          const wait = ++failed % urls.length === 0 ? delay : 0;
          logger.warn({ err: errorMessage(err), node: tried, retryInMs: wait }, "rabbitmq connect failed");
          if (wait > 0) {
            await sleep(wait, abort.signal);
            delay = Math.min(delay * 2, 5000);
          }
        }
      }
    } finally {
      looping = false;
    }
  }
  void loop();

  return {
    topology,
    ready: () => readyPromise,
    isConnected: () => connection !== undefined,
    onConnect(fn) {
      hooks.push(fn);
      if (connection) void fn(connection).catch((err) => logger.error({ err: errorMessage(err) }, "rabbitmq setup failed"));
    },
    async publish(exchange, routingKey, content, options) {
      if (drained) await drained;
      const ch = publisher;
      if (!ch) throw new DependencyError("rabbitmq", "not connected");
      await new Promise<void>((resolve, reject) => {
        let ok: boolean;
        try {
          ok = ch.publish(exchange, routingKey, content, { ...options, headers: headersOfCopy(options.headers) }, (err) =>
            err
              ? reject(new DependencyError("rabbitmq", "message was not confirmed (nack or channel closed)", { cause: err }))
              : resolve(),
          );
        } catch (err) {
          reject(new DependencyError("rabbitmq", errorMessage(err), { cause: err }));
          return;
        }
        if (!ok && !drained) {
          // Socket buffer is full: later publishes wait for it to drain (or the channel to go).
          drained = new Promise<void>((res) => {
            const done = () => {
              drained = undefined;
              ch.off("drain", done);
              ch.off("close", done);
              res();
            };
            ch.on("drain", done);
            ch.on("close", done);
          });
        }
      });
    },
    async withChannel(fn) {
      if (!connection) throw new DependencyError("rabbitmq", "not connected");
      const ch = await (await adminConnection()).createChannel();
      ch.on("error", () => undefined);
      try {
        return await fn(ch);
      } finally {
        await ch.close().catch(() => undefined);
      }
    },
    async close() {
      closing = true;
      abort.abort();
      rejectReady(new Error("broker closed"));
      const conn = connection;
      connection = undefined;
      publisher = undefined;
      const management = admin;
      admin = undefined;
      await Promise.all([conn?.close().catch(() => undefined), management?.then((c) => c.close()).catch(() => undefined)]);
    },
  };
}

const CONNECT_TIMEOUT_MS = 5000;

/** host:port of a node's URL, for logs (never the credentials). */
export function nodeName(url: string): string {
  const u = new URL(url);
  return `${u.hostname}:${u.port || (u.protocol === "amqps:" ? 5671 : 5672)}`;
}
