// The gateway's spans: an order's trace opens when its row is published ("publish order",
// linked to its "publish batch"), and a redriven copy is published in a "redrive" span of the
// order's trace, linked to the redrive operation.
import { context, type Link, SpanKind, trace, type Tracer } from "@opentelemetry/api";

import type { MessagePublisher, Tracing } from "./tracing.ts";
import { ATTR, contextOf, inject, orderAttributes, within } from "./tracing-spans.ts";

export function gatewaySpans(tracer: Tracer): Pick<Tracing, "publishBatch" | "redrive"> {
  return {
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
  };
}
