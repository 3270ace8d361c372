// One trace per order, across every hop, with OpenTelemetry.
//
// The gateway opens an order's trace when it publishes the row: a root span per
// message ("publish order", linked to the span of its publish batch) whose context
// goes into the message's headers as W3C traceparent. Every later copy carries the
// context of the span that sent it: a retry copy (through its wait queue: the broker
// keeps the headers when it dead-letters the copy back) the "retry" span, a dead
// letter the "dead-letter" span, a redriven copy the "redrive" span. So each
// attempt's span, started from the headers of the copy it processes, lands in the
// order's trace, in order, with the endput write under the attempt that succeeded.
// Every attempt-log entry records its trace id.
//
// Off (no exporter, no OTLP endpoint), processes get noTracing: every hook calls
// straight through, and the SDK is never loaded.
import { trace } from "@opentelemetry/api";

import type { LogDocument } from "./attempt-log.ts";
import type { Config } from "./config.ts";
import type { Logger } from "./logger.ts";
import { consumerSpans } from "./tracing-consumer.ts";
import { gatewaySpans } from "./tracing-gateway.ts";

export type Headers = Record<string, unknown>;
/** A delivery (amqplib's ConsumeMessage or GetMessage): its headers carry the trace context. */
export interface Delivery {
  properties: { headers?: Headers };
}
/** Publish options (amqplib's Options.Publish). */
export interface Publish {
  headers?: Headers;
}

export interface OrderFacts {
  messageId: string;
  system: string | null;
  orderId: number | null;
}

/** Publishes one message as the first span of its order's trace, its context in the headers. */
export type MessagePublisher = <O extends Publish>(
  facts: OrderFacts,
  options: O,
  publish: (options: O) => Promise<void>,
) => Promise<void>;

export interface Tracing {
  readonly enabled: boolean;
  /** Runs one publish batch in its span; `message` publishes each row. */
  publishBatch<T>(
    facts: { system: string; fromId: number; toId: number; count: number },
    fn: (message: MessagePublisher) => Promise<T>,
  ): Promise<T>;
  /**
   * Runs one consumer batch in a span of its own (its store calls and forwards are batch-wide,
   * not one order's), linked to the trace of each delivery.
   */
  consumeBatch<T>(deliveries: readonly Delivery[], fn: () => Promise<T>): Promise<T>;
  /** Starts an attempt span per delivery (docs[i] describes deliveries[i]) and records its trace id on the doc. */
  startAttempts(deliveries: readonly Delivery[], docs: LogDocument[]): void;
  /** Runs the endput write for these deliveries, with a span under each one's attempt. */
  endputWrite<T>(deliveries: readonly Delivery[], fn: () => Promise<T>): Promise<T>;
  /** Publishes a delivery's retry copy or dead letter in a span under its attempt, whose context the copy carries. */
  forward<T>(delivery: Delivery, to: { queue: string; deadLetter: boolean; options: Publish }, fn: () => Promise<T>): Promise<T>;
  /** Ends the deliveries' attempt spans: after their batch was acked, or with the error that stopped it. */
  endAttempts(deliveries: readonly Delivery[], error?: unknown): void;
  /**
   * Publishes a redriven copy in a span of the order's trace (taken from the dead letter's headers),
   * linked to the redrive operation; resolves with the trace id.
   */
  redrive(
    order: OrderFacts & { round: number },
    from: Headers | undefined,
    options: Publish,
    fn: () => Promise<void>,
  ): Promise<string | undefined>;
  /** Flushes and stops the SDK. */
  shutdown(): Promise<void>;
}

export const noTracing: Tracing = {
  enabled: false,
  publishBatch: (_facts, fn) => fn((_facts, options, publish) => publish(options)),
  consumeBatch: (_deliveries, fn) => fn(),
  startAttempts: () => undefined,
  endputWrite: (_deliveries, fn) => fn(),
  forward: (_delivery, _to, fn) => fn(),
  endAttempts: () => undefined,
  redrive: async (_order, _from, _options, fn) => {
    await fn();
    return undefined;
  },
  shutdown: async () => undefined,
};

/**
 * Starts the SDK when the configuration turns tracing on (its module hooks come from
 * tracing-preload.ts, loaded with --import before the entry point) and returns the hooks.
 */
export async function startTracing(config: Config, service: string, logger: Logger): Promise<Tracing> {
  if (!config.tracing.enabled) return noTracing;
  const sdk = await import("./tracing-sdk.ts");
  if (!sdk.isInstrumented())
    logger.warn(
      "tracing is on but the process was started without --import ./common/tracing-preload.ts: " +
        "the pipeline's own spans are recorded, the client libraries' (amqplib, pg, redis, mongodb, graphql, http) are not",
    );
  const shutdown = sdk.startSdk(config, service);
  logger.info({ exporter: config.tracing.exporter }, "tracing on");
  return createTracing(shutdown);
}

function createTracing(shutdown: () => Promise<void>): Tracing {
  const tracer = trace.getTracer("tentativa");
  return { enabled: true, ...gatewaySpans(tracer), ...consumerSpans(tracer), shutdown };
}
