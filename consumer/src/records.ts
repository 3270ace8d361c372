// What a processed delivery leaves behind in the stores, shared by the consumer
// and the benchmark that replays its batch steps.
import type pg from "pg";

import type { LogDocument } from "../../common/attempt-log.ts";
import type { DecodedDelivery } from "../../common/contract.ts";

const INSERT_ENDPUT_ROWS = `
  insert into orders (source_system, source_order_id, message_id, product, price, security_check, attempts)
  select * from unnest($1::source_system[], $2::int[], $3::uuid[], $4::text[], $5::numeric[], $6::boolean[], $7::int[])
  on conflict (source_system, source_order_id) do nothing`;

/** Endput rows for successful deliveries, one statement; a row already there (a redelivery) is left as it is. */
export async function insertEndputRows(endput: pg.Pool, deliveries: DecodedDelivery[]): Promise<number> {
  const m = deliveries.map((d) => d.message);
  const r = await endput.query(INSERT_ENDPUT_ROWS, [
    m.map((x) => x.source.system),
    m.map((x) => x.source.orderId),
    m.map((x) => x.messageId),
    m.map((x) => x.order.product),
    m.map((x) => x.order.price),
    m.map((x) => x.order.securityCheck),
    deliveries.map((d) => d.attempt),
  ]);
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
