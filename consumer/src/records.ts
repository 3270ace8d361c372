// What a processed delivery leaves behind in the stores, shared by the consumer
// and the benchmark that replays its batch steps.
import type { LogDocument } from "../../common/attempt-log.ts";
import type { DecodedDelivery } from "../../common/contract.ts";
import type { EndputClient } from "../../common/stores.ts";

/** Endput rows for successful deliveries, one statement; a row already there (a redelivery) is left as it is. */
export function insertEndputRows(endput: EndputClient, deliveries: DecodedDelivery[]): Promise<number> {
  const m = deliveries.map((d) => d.message);
  return endput.$executeRaw`
    insert into orders (source_system, source_order_id, message_id, product, price, security_check, attempts)
    select * from unnest(
      ${m.map((x) => x.source.system)}::source_system[], ${m.map((x) => x.source.orderId)}::int[],
      ${m.map((x) => x.messageId)}::uuid[], ${m.map((x) => x.order.product)}::text[],
      ${m.map((x) => x.order.price)}::numeric[], ${m.map((x) => x.order.securityCheck)}::boolean[],
      ${deliveries.map((d) => d.attempt)}::int[])
    on conflict (source_system, source_order_id) do nothing`;
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
