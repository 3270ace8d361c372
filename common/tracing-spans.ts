// Helpers every span of the pipeline uses: its attributes, running work inside a span, and the
// trace context carried in AMQP headers.
import { type Context, context, propagation, ROOT_CONTEXT, type Span, SpanStatusCode, trace } from "@opentelemetry/api";

import { errorMessage } from "./errors.ts";
import type { Headers, OrderFacts, Publish } from "./tracing.ts";

export const ATTR = {
  messageId: "tentativa.message_id",
  system: "tentativa.system",
  orderId: "tentativa.order_id",
  round: "tentativa.round",
  attempt: "tentativa.attempt",
  status: "tentativa.status",
} as const;

export function orderAttributes(o: OrderFacts) {
  return {
    [ATTR.messageId]: o.messageId,
    ...(o.system ? { [ATTR.system]: o.system } : {}),
    ...(o.orderId != null ? { [ATTR.orderId]: o.orderId } : {}),
  };
}

export function fail(span: Span, err: unknown): void {
  span.setStatus({ code: SpanStatusCode.ERROR, message: errorMessage(err) });
}

/** Runs fn with the span active, ends the span when fn settles. */
export async function within<T>(span: Span, fn: () => Promise<T>): Promise<T> {
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
export function inject(span: Span, options: Publish): void {
  options.headers ??= {};
  propagation.inject(trace.setSpan(ROOT_CONTEXT, span), options.headers);
}

/** The SDK's default limit on links per span. */
export const MAX_LINKS = 128;

export const contextOf = (headers: Headers | undefined): Context => propagation.extract(ROOT_CONTEXT, headers ?? {});
