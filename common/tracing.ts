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
import {
  type Context,
  context,
  type Link,
  propagation,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
} from "@opentelemetry/api";

import type { LogDocument } from "./attempt-log.ts";
import type { Config } from "./config.ts";
import { errorMessage } from "./errors.ts";
import type { Logger } from "./logger.ts";

type Headers = Record<string, unknown>;
/** A delivery (amqplib's ConsumeMessage or GetMessage): its headers carry the trace context. */
interface Delivery {
  properties: { headers?: Headers };
}
/** Publish options (amqplib's Options.Publish). */
interface Publish {
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

const ATTR = {
  messageId: "tentativa.message_id",
  system: "tentativa.system",
  orderId: "tentativa.order_id",
  round: "tentativa.round",
  attempt: "tentativa.attempt",
  status: "tentativa.status",
} as const;

function orderAttributes(o: OrderFacts) {
  return {
    [ATTR.messageId]: o.messageId,
    ...(o.system ? { [ATTR.system]: o.system } : {}),
    ...(o.orderId != null ? { [ATTR.orderId]: o.orderId } : {}),
  };
}

function fail(span: Span, err: unknown): void {
  span.setStatus({ code: SpanStatusCode.ERROR, message: errorMessage(err) });
}

/** Runs fn with the span active, ends the span when fn settles. */
async function within<T>(span: Span, fn: () => Promise<T>): Promise<T> {
  try {
    return await context.with(trace.setSpan(context.active(), span), fn);
  } catch (err) {
    fail(span, err);
    throw err;
  } finally {
    span.end();
  }
}

/** The headers, or an object put in their place, to write the span's context into. */
function inject(span: Span, options: Publish): void {
  options.headers ??= {};
  propagation.inject(trace.setSpan(ROOT_CONTEXT, span), options.headers);
}

/** The SDK's default limit on links per span. */
const MAX_LINKS = 128;

const contextOf = (headers: Headers | undefined): Context => propagation.extract(ROOT_CONTEXT, headers ?? {});

function createTracing(shutdown: () => Promise<void>): Tracing {
  const tracer = trace.getTracer("tentativa");
  // Each delivery's attempt span, from its batch's start until its ack.
  const attempts = new WeakMap<Delivery, Span>();
  const underAttempt = (d: Delivery) => {
    const span = attempts.get(d);
    return span ? trace.setSpan(ROOT_CONTEXT, span) : contextOf(d.properties.headers);
  };

  return {
    enabled: true,
    publishBatch(facts, fn) {
      const batch = tracer.startSpan("publish batch", {
        attributes: {
          [ATTR.system]: facts.system,
          "tentativa.from_id": facts.fromId,
          "tentativa.to_id": facts.toId,
          "tentativa.count": facts.count,
        },
      });
      const link: Link = { context: batch.spanContext() };
      const message: MessagePublisher = (order, options, publish) => {
        // A trace of its own per order, linked to the batch that published it.
        const span = tracer.startSpan("publish order", {
          kind: SpanKind.PRODUCER,
          root: true,
          links: [link],
          attributes: orderAttributes(order),
        });
        const traced = { ...options, headers: { ...options.headers } };
        inject(span, traced);
        return within(span, () => publish(traced));
      };
      return within(batch, () => fn(message));
    },
    consumeBatch(deliveries, fn) {
      const links = deliveries.slice(0, MAX_LINKS).flatMap((d) => {
        const c = trace.getSpanContext(contextOf(d.properties.headers));
        return c ? [{ context: c }] : [];
      });
      const batch = tracer.startSpan(
        "consume batch",
        { kind: SpanKind.CONSUMER, root: true, links, attributes: { "messaging.batch.message_count": deliveries.length } },
        ROOT_CONTEXT,
      );
      return within(batch, fn);
    },
    startAttempts(deliveries, docs) {
      const batch = trace.getSpanContext(context.active());
      deliveries.forEach((d, i) => {
        const doc = docs[i]!;
        const span = tracer.startSpan(
          "attempt",
          {
            kind: SpanKind.CONSUMER,
            links: batch ? [{ context: batch }] : [],
            attributes: {
              ...orderAttributes(doc),
              [ATTR.round]: doc.round,
              [ATTR.attempt]: doc.attempt,
              [ATTR.status]: doc.status,
            },
          },
          contextOf(d.properties.headers),
        );
        if (doc.status !== "SUCCEEDED") span.setStatus({ code: SpanStatusCode.ERROR, message: doc.error ?? doc.status });
        attempts.set(d, span);
        doc.traceId = span.spanContext().traceId;
      });
    },
    async endputWrite(deliveries, fn) {
      const spans = deliveries.map((d) =>
        tracer.startSpan(
          "endput insert",
          { kind: SpanKind.CLIENT, attributes: { "db.system.name": "postgresql", "tentativa.batch_rows": deliveries.length } },
          underAttempt(d),
        ),
      );
      try {
        return await fn();
      } catch (err) {
        for (const s of spans) fail(s, err);
        throw err;
      } finally {
        for (const s of spans) s.end();
      }
    },
    forward(d, to, fn) {
      const span = tracer.startSpan(
        to.deadLetter ? "dead-letter" : "retry",
        { kind: SpanKind.PRODUCER, attributes: { "messaging.destination.name": to.queue } },
        underAttempt(d),
      );
      inject(span, to.options);
      return within(span, fn);
    },
    endAttempts(deliveries, error) {
      for (const d of deliveries) {
        const span = attempts.get(d);
        if (!span) continue;
        attempts.delete(d);
        if (error !== undefined) fail(span, error);
        span.end();
      }
    },
    async redrive(order, from, options, fn) {
      const operation = trace.getSpanContext(context.active());
      const span = tracer.startSpan(
        "redrive",
        {
          kind: SpanKind.PRODUCER,
          attributes: { ...orderAttributes(order), [ATTR.round]: order.round },
          links: operation ? [{ context: operation }] : [],
        },
        contextOf(from),
      );
      inject(span, options);
      await within(span, fn);
      return span.spanContext().traceId;
    },
    shutdown,
  };
}
