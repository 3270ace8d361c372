// An attempt-log entry as the consumer writes it, for tests that put history in the log directly.
import type { LogDocument } from "../../common/attempt-log.ts";

/**
 * A first-round SUCCEEDED attempt of order SYSTEM1/1, processed and published now, expiring in a
 * minute; `fields` replaces any of it.
 */
export function logEntry(fields: Partial<LogDocument> & Pick<LogDocument, "messageId">): LogDocument {
  const now = new Date();
  return {
    round: 0,
    attempt: 1,
    status: "SUCCEEDED",
    requiredAttempts: 1,
    maxAttempts: 5,
    system: "SYSTEM1",
    orderId: 1,
    publishedAt: now,
    order: { product: "Lamp", price: "9.99", securityCheck: true },
    error: null,
    processedAt: now,
    expiresAt: new Date(now.getTime() + 60_000),
    retained: false,
    durationMs: 1,
    consumerId: "test",
    ...fields,
  };
}
