// What a processed delivery leaves behind in the stores, shared by the consumer
// and the benchmark that replays its batch steps.
import type pg from "pg";

import type { LogDocument } from "../../common/attempt-log.ts";
import type { DecodedDelivery } from "../../common/contract.ts";

// The rows go as one JSON array: JSON.stringify is native, where seven array parameters had pg
// quote and escape every element in JavaScript (BENCHMARKS.md, 2 December).
const INSERT_ENDPUT_ROWS = `
  insert into orders (source_system, source_order_id, message_id, product, price, security_check, attempts)
  select r.system::source_system, r.order_id, r.message_id, r.product, r.price, r.security_check, r.attempts
  from json_to_recordset($1::json) as r(
    system text, order_id int, message_id uuid, product text, price numeric, security_check boolean, attempts int)
  on conflict (source_system, source_order_id) do nothing`;

/** Endput rows for successful deliveries, one statement; a row already there (a redelivery) is left as it is. */
export async function insertEndputRows(endput: pg.Pool, deliveries: DecodedDelivery[]): Promise<number> {
  const rows = deliveries.map(({ message: { source, messageId, order }, attempt }) => ({
    system: source.system,
    order_id: source.orderId,
    message_id: messageId,
    product: order.product,
    price: order.price,
    security_check: order.securityCheck,
    attempts: attempt,
  }));
  const r = await endput.query(INSERT_ENDPUT_ROWS, [JSON.stringify(rows)]);
  return r.rowCount ?? 0;
}

/** The attempt-log fields that come from a decoded delivery. */
export function deliveryLogFields({ message, attempt, round }: DecodedDelivery) {
  return {
    round,
    attempt,
    requiredAttempts: message.requiredAttempts,
    system: message.source.system,
    orderId: message.source.orderId,
    publishedAt: new Date(message.publishedAt),
    order: message.order,
  } satisfies Partial<LogDocument>;
}
