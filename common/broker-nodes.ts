// The broker's nodes: which one the main connection uses, connecting to it (or to any that
// answers), and reconnecting after a failure. With several nodes (a cluster, AMQP_URL as a list)
// a lost or refused connection moves on to the next node at once; the backoff starts only when
// every node refused.
import amqp, { type ChannelModel } from "amqplib";

import { errorMessage, sleep } from "./errors.ts";
import type { Logger } from "./logger.ts";

const CONNECT_TIMEOUT_MS = 5000;

export interface NodeDialer {
  /** The URL of the node the main connection uses (or tries next). */
  current(): string;
  /** Moves on to the next node. */
  advance(): void;
  /** Connects to the current node. */
  connect(role: string): Promise<ChannelModel>;
  /** Connects to any live node, starting with the current one. */
  connectAny(role: string): Promise<ChannelModel>;
}

/** `name` and the role name the connections in the broker's management UI. */
export function createNodeDialer(urls: readonly string[], name: string): NodeDialer {
  let node = 0;
  function connect(role: string, index: number): Promise<ChannelModel> {
    const url = new URL(urls[index % urls.length]!);
    url.searchParams.set("heartbeat", url.searchParams.get("heartbeat") ?? "10");
    return amqp
      .connect(url.toString(), {
        noDelay: true,
        // A node that is partitioned away accepts nothing: give up on it and try the next.
        timeout: CONNECT_TIMEOUT_MS,
        clientProperties: { connection_name: `${name}${role}@${process.pid}` },
      })
      .then(coalesceWrites);
  }
  return {
    current: () => urls[node]!,
    advance() {
      node = (node + 1) % urls.length;
    },
    connect: (role) => connect(role, node),
    async connectAny(role) {
      let last: unknown;
      for (let i = 0; i < urls.length; i++) {
        try {
          return await connect(role, node + i);
        } catch (err) {
          last = err;
        }
      }
      throw last;
    },
  };
}

interface Muxer {
  out: { cork(): void; uncork(): void };
  _readIncoming(): void;
}

/**
 * Hands the socket each burst of frames as one write. amqplib's multiplexer moves every frame
 * waiting in the channels to the socket in one pass, but with one `write` each, and with Nagle
 * off (noDelay) every one is a system call and a TCP segment of its own: a refill of the publisher's
 * confirm window would be 128 writes. Corked for the pass, they leave in one `writev`. Backpressure is
 * unchanged: a corked write still returns false past the socket's high-water mark, which ends the
 * pass until "drain".
 */
function coalesceWrites(model: ChannelModel): ChannelModel {
  const muxer = (model as unknown as { connection?: { muxer?: Partial<Muxer> } }).connection?.muxer;
  const pass = muxer?._readIncoming;
  const out = muxer?.out;
  if (typeof pass !== "function" || typeof out?.cork !== "function" || typeof out.uncork !== "function") return model;
  muxer!._readIncoming = function corkedPass(this: Muxer) {
    out.cork();
    try {
      pass.call(this);
    } finally {
      out.uncork();
    }
  };
  return model;
}

/**
 * The reconnect loop: runs `attempt` against the current node until it succeeds (then calls
 * `connected`) or `closing()` holds. After each failure `failed` cleans up and the next node is
 * tried at once; only when every node refused in turn does it back off, doubling up to 5 s.
 * Calling the loop while it runs does nothing.
 */
export function createReconnectLoop(opts: {
  dialer: NodeDialer;
  attempt: () => Promise<void>;
  failed: () => Promise<void>;
  connected: () => void;
  closing: () => boolean;
  signal: AbortSignal;
  nodes: number;
  logger: Logger;
}): () => Promise<void> {
  const { dialer, logger } = opts;
  let looping = false;
  return async () => {
    if (looping) return;
    looping = true;
    let delay = 100;
    let failed = 0;
    try {
      while (!opts.closing()) {
        try {
          await opts.attempt();
          opts.connected();
          return;
        } catch (err) {
          await opts.failed();
          const tried = nodeName(dialer.current());
          dialer.advance();
          const wait = ++failed % opts.nodes === 0 ? delay : 0;
          logger.warn({ err: errorMessage(err), node: tried, retryInMs: wait }, "rabbitmq connect failed");
          if (wait > 0) {
            await sleep(wait, opts.signal);
            delay = Math.min(delay * 2, 5000);
          }
        }
      }
    } finally {
      looping = false;
    }
  };
}

/** host:port of a node's URL, for logs (never the credentials). */
export function nodeName(url: string): string {
  const u = new URL(url);
  return `${u.hostname}:${u.port || (u.protocol === "amqps:" ? 5671 : 5672)}`;
}
