// What redrives and discards write to the attempt log: the REDRIVEN and DISCARDED entries of a
// message's history, and one record per operation beside the log (collections `redrives` and
// `discards`).
import type { AttemptLog, LogDocument } from "../../../common/attempt-log.ts";
import type { System } from "../../../common/contract.ts";
import type { Logger } from "../../../common/logger.ts";
import { type DeadLetter, groupSystemOf, type RedriveFilter } from "./dead-letter-walk.ts";

/** What every entry the gateway logs for a dead letter shares. */
function gatewayEntry(
  d: DeadLetter,
  at: { now: Date; expiresAt: Date; maxAttempts: number },
  system: System | null,
  orderId: number | null,
) {
  return {
    messageId: d.messageId,
    attempt: 0,
    requiredAttempts: null,
    maxAttempts: at.maxAttempts,
    system,
    orderId,
    publishedAt: null,
    order: null,
    processedAt: at.now,
    expiresAt: at.expiresAt,
    retained: false,
    durationMs: null,
    consumerId: "gateway",
  };
}

/** A REDRIVEN entry opens the new round in the message's history and records that the round before was redriven. */
export function redrivenEntry(
  d: DeadLetter,
  round: number,
  at: { now: Date; expiresAt: Date; maxAttempts: number },
  traceId?: string,
): LogDocument {
  return {
    ...gatewayEntry(d, at, d.system, d.orderId),
    round,
    status: "REDRIVEN",
    error: `redriven after ${d.attempts} attempts (${d.reason})`,
    ...(traceId ? { traceId } : {}),
  };
}

/** A DISCARDED entry closes the copy's round; as the consumer logged and counted it, a rejected message is under no system. */
export function discardedEntry(d: DeadLetter, at: { now: Date; expiresAt: Date; maxAttempts: number }): LogDocument {
  const system = groupSystemOf(d);
  return {
    ...gatewayEntry(d, at, system, system ? d.orderId : null),
    round: d.round,
    status: "DISCARDED",
    error: `discarded after ${d.attempts} attempts (${d.reason})`,
  };
}

/**
 * Whether this copy's round was redriven already: its REDRIVEN entry is the durable record,
 * kept as long as the copy is in the DLQ (its history is released only after the ack).
 */
export async function wasRedriven(log: AttemptLog, d: DeadLetter, round: number): Promise<boolean> {
  // A copy without a message id cannot be told from another one.
  if (!d.messageId) return false;
  const found = await log.collection.findOne({ messageId: d.messageId, round, attempt: 0, status: "REDRIVEN" });
  return found !== null;
}

/** Records a redrive or a discard: who asked, when, with which filter, and what it did. */
export async function recordOperation(
  log: AttemptLog,
  logger: Logger,
  collection: "redrives" | "discards",
  at: Date,
  by: string | undefined,
  filter: RedriveFilter,
  outcome: Record<string, unknown>,
): Promise<void> {
  const doc = {
    at,
    finishedAt: new Date(),
    by: by ?? null,
    filter: { ...filter, messageIds: filter.messageIds ? [...filter.messageIds] : null },
    ...outcome,
  };
  await log.collection.db
    .collection(collection)
    .insertOne(doc)
    .catch((err) => logger.warn({ err: (err as Error).message, collection }, "could not record the operation"));
}
