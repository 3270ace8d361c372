// The consumer's spans: one "consume batch" span per batch, linked to each delivery's trace, and
// under each delivery's trace an "attempt" span from its batch's start until its ack, with the
// endput write and the copy it forwards (retry or dead letter) as its children.
import {
  context,
  ROOT_CONTEXT,
  type Span,
  type SpanContext,
  SpanKind,
  SpanStatusCode,
  trace,
  type Tracer,
} from "@opentelemetry/api";

import type { LogDocument } from "./attempt-log.ts";
import type { Delivery, Tracing } from "./tracing.ts";
import { ATTR, contextOf, fail, inject, MAX_LINKS, orderAttributes, within } from "./tracing-spans.ts";

export function consumerSpans(
  tracer: Tracer,
): Pick<Tracing, "consumeBatch" | "startAttempts" | "endputWrite" | "forward" | "endAttempts"> {
  // Each delivery's attempt span, from its batch's start until its ack.
  const attempts = new WeakMap<Delivery, Span>();
  const underAttempt = (d: Delivery) => {
    const span = attempts.get(d);
    return span ? trace.setSpan(ROOT_CONTEXT, span) : contextOf(d.properties.headers);
  };

  return {
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
        const span = startAttempt(tracer, d, doc, batch);
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
  };
}

/** An attempt span under the delivery's trace, linked to its batch, failed unless the attempt succeeded. */
function startAttempt(tracer: Tracer, d: Delivery, doc: LogDocument, batch: SpanContext | undefined): Span {
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
  return span;
}
