// The delivery pump: flow control. It owns the consume channel (in transaction mode, consumed
// again after a channel-level error), takes deliveries up to the prefetch, cuts them into batches
// (full, or partial after the batch wait), runs up to `concurrency` batches at once so that one
// batch's database writes overlap another's broker and log writes, and commits them (forwards and
// ack) in delivery order. What a batch does is the handler's (batch-processor.ts, forwarder.ts).
import type { Channel, ChannelModel, ConsumeMessage } from "amqplib";

import { txSelect } from "../../common/amqp-tx.ts";
import type { Broker } from "../../common/broker.ts";
import type { Config } from "../../common/config.ts";
import { errorMessage } from "../../common/errors.ts";
import type { Logger } from "../../common/logger.ts";
import { noTracing, type Tracing } from "../../common/tracing.ts";
import type { ConsumerMetrics } from "./metrics.ts";
import { ChannelGone } from "./store-retry.ts";

export interface BatchHandler<T> {
  /** Everything a batch does before its commit; may run alongside other batches. Rejects with ChannelGone once `alive` turns false. */
  process(batch: ConsumeMessage[], alive: () => boolean): Promise<T>;
  /** Commits a processed batch on its channel (its forwards and its ack, in one AMQP transaction). */
  commit(ch: Channel, batch: ConsumeMessage[], processed: T, alive: () => boolean): Promise<void>;
  /** The batch failed outside any one message; its channel is closed after this and the batch redelivered. */
  failed(batch: ConsumeMessage[]): Promise<void>;
}

export interface DeliveryPump {
  start(): void;
  /** Stops taking messages, finishes and acks what it holds, then resolves. */
  stop(): Promise<void>;
  ready(): boolean;
  /** inFlight: delivered to this consumer and not yet acked. */
  stats(): { processed: number; batches: number; inFlight: number };
}

interface PumpDeps<T> {
  config: Config;
  logger: Logger;
  broker: Broker;
  handler: BatchHandler<T>;
  metrics?: ConsumerMetrics | undefined;
  tracing?: Tracing;
}

export function createDeliveryPump<T>(deps: PumpDeps<T>): DeliveryPump {
  return new Pump(deps);
}

class Pump<T> implements DeliveryPump {
  private readonly config: Config["consumer"];
  private readonly logger: Logger;
  private readonly broker: Broker;
  private readonly handler: BatchHandler<T>;
  private readonly tracing: Tracing;
  private readonly queue: string;

  private channel: Channel | undefined;
  private consumerTag: string | undefined;
  private buffer: ConsumeMessage[] = [];
  private pumping: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private flushDue = false;
  private wake: (() => void) | undefined;
  private readonly running = new Set<Promise<void>>();
  private readonly ackChain = new WeakMap<Channel, Promise<boolean>>();
  private readonly condemned = new WeakSet<Channel>();
  private stopping = false;
  private processed = 0;
  private batches = 0;
  private unacked = 0;
  // Arrival times of the deliveries held unacked, in delivery order: acks go in that order too.
  private unackedSince: number[] = [];

  constructor(deps: PumpDeps<T>) {
    this.config = deps.config.consumer;
    this.logger = deps.logger;
    this.broker = deps.broker;
    this.handler = deps.handler;
    this.tracing = deps.tracing ?? noTracing;
    this.queue = deps.broker.topology.primary;
    deps.metrics?.watchUnacked(() => this.unackedSince[0] ?? null);
  }

  start(): void {
    this.broker.onConnect((conn) => this.setup(conn));
  }

  async stop(): Promise<void> {
    this.stopping = true;
    const ch = this.channel;
    if (ch && this.consumerTag) await ch.cancel(this.consumerTag).catch(() => undefined);
    // Finish what was delivered before the cancel took effect.
    this.flushDue = true;
    this.kick();
    while (this.pumping) await this.pumping;
    if (this.buffer.length > 0 && this.channel) {
      this.flushDue = true;
      this.kick();
    }
    while (this.pumping) await this.pumping;
    this.channel = undefined;
    if (ch) await ch.close().catch(() => undefined);
  }

  ready(): boolean {
    return this.channel !== undefined && this.consumerTag !== undefined;
  }

  stats() {
    return { processed: this.processed, batches: this.batches, inFlight: this.unacked };
  }

  private async setup(conn: ChannelModel): Promise<void> {
    if (this.stopping) return;
    const { prefetch } = this.config;
    const ch = await conn.createChannel();
    await txSelect(ch);
    ch.on("error", (err: Error) => this.logger.warn({ err: errorMessage(err) }, "rabbitmq consume channel error"));
    ch.on("close", () => this.onClose(conn, ch));
    await ch.prefetch(prefetch);
    this.channel = ch;
    const { consumerTag } = await ch.consume(this.queue, (msg) => msg && this.onMessage(ch, msg), { noAck: false });
    this.consumerTag = consumerTag;
    this.logger.info({ queue: this.queue, prefetch, consumerId: this.config.id }, "consuming");
  }

  private onClose(conn: ChannelModel, ch: Channel): void {
    if (this.channel !== ch) return;
    this.channel = undefined;
    this.consumerTag = undefined;
    // Unacked deliveries of this channel go back to the queue; drop our copies.
    this.buffer = [];
    this.unacked = 0;
    this.unackedSince = [];
    // A channel-level error leaves the connection up: consume again on a new channel.
    if (!this.stopping && this.broker.isConnected()) {
      setTimeout(() => {
        if (!this.stopping && !this.channel && this.broker.isConnected()) {
          this.setup(conn).catch((err) => this.logger.error({ err: errorMessage(err) }, "could not resume consuming"));
        }
      }, 100);
    }
  }

  private onMessage(ch: Channel, msg: ConsumeMessage): void {
    if (ch !== this.channel) return;
    this.unacked++;
    this.unackedSince.push(Date.now());
    this.buffer.push(msg);
    if (this.buffer.length >= this.config.batchSize) this.kick();
    else if (!this.timer) this.flushAfterWait();
  }

  private flushAfterWait(): void {
    this.timer = setTimeout(() => {
      this.flushDue = true;
      this.kick();
    }, this.config.batchWaitMs);
  }

  private kick(): void {
    if (this.buffer.length >= this.config.batchSize || this.flushDue) {
      if (this.timer) clearTimeout(this.timer);
      this.timer = undefined;
    }
    this.wake?.();
    if (!this.pumping) this.pumping = this.pump().finally(() => (this.pumping = undefined));
  }

  /** Starts batches while fewer than `concurrency` run; returns once nothing is buffered or running. */
  private async pump(): Promise<void> {
    const { batchSize, concurrency } = this.config;
    while ((this.buffer.length > 0 && this.channel) || this.running.size > 0) {
      const ready = this.buffer.length >= batchSize || ((this.flushDue || this.stopping) && this.buffer.length > 0);
      if (ready && this.channel && this.running.size < concurrency) {
        this.flushDue = false;
        this.startBatch(this.channel, this.buffer.splice(0, batchSize));
        continue;
      }
      // A partial batch left behind still goes out after the batch wait.
      if (this.buffer.length > 0 && !this.timer && !ready) this.flushAfterWait();
      // Wait for a batch to finish or for more deliveries.
      await Promise.race([...this.running, new Promise<void>((r) => (this.wake = r))]);
      this.wake = undefined;
    }
  }

  /**
   * Runs a batch whose commit waits for the batch before it on the channel: it acks with
   * multiple = true, which would also ack an earlier batch still running or failed
   * (tests/delivery-pump.test.ts: "commits batches in delivery order when a later one finishes
   * first", "never acks past a batch that failed: the broker redelivers both").
   */
  private startBatch(ch: Channel, batch: ConsumeMessage[]): void {
    const previous = this.ackChain.get(ch) ?? Promise.resolve(true);
    let settle!: (acked: boolean) => void;
    this.ackChain.set(ch, new Promise<boolean>((r) => (settle = r)));
    const run: Promise<void> = this.tracing
      .consumeBatch(batch, () => this.runBatch(ch, batch, previous))
      .then(settle, () => settle(false))
      .finally(() => this.running.delete(run));
    this.running.add(run);
  }

  /** Processes a batch and commits it after its predecessor; resolves whether it was acked. */
  private async runBatch(ch: Channel, batch: ConsumeMessage[], previous: Promise<boolean>): Promise<boolean> {
    const alive = () => ch === this.channel && !this.condemned.has(ch);
    try {
      const done = await this.handler.process(batch, alive);
      if (!(await previous) || !alive()) throw new ChannelGone();
      try {
        await this.handler.commit(ch, batch, done, alive);
      } catch (err) {
        // The ack did not go with the channel: the broker redelivers the batch.
        this.logger.warn({ err: errorMessage(err) }, "commit failed");
        throw new ChannelGone();
      }
      this.unacked -= batch.length;
      this.unackedSince.splice(0, batch.length);
      this.processed += batch.length;
      this.batches++;
      this.tracing.endAttempts(batch);
      return true;
    } catch (err) {
      this.tracing.endAttempts(batch, err);
      if (err instanceof ChannelGone) {
        this.logger.warn({ dropped: batch.length }, "channel closed mid-batch; the broker redelivers it");
        return false;
      }
      await this.condemn(ch, batch, err);
      return false;
    }
  }

  /** Unexpected outside any one message: leaves the batch uncommitted on a channel it closes, so it is redelivered. */
  private async condemn(ch: Channel, batch: ConsumeMessage[], err: unknown): Promise<void> {
    this.condemned.add(ch);
    this.logger.error(
      { err: errorMessage(err), stack: (err as Error).stack },
      "batch failed; closing the channel for redelivery",
    );
    await this.handler
      .failed(batch)
      .catch((e: unknown) => this.logger.warn({ err: errorMessage(e) }, "could not count the failure"));
    await ch.close().catch(() => undefined);
  }
}
