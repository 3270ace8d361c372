// What to do with one delivery. Pure: no I/O, so the rules are unit-tested alone.
import { type DecodedDelivery, decodeDelivery, InvalidMessageError, type ProcessingStatus } from "../../common/contract.ts";

export type Outcome =
  | { kind: "SUCCEEDED"; delivery: DecodedDelivery }
  | { kind: "RETRY_SCHEDULED"; delivery: DecodedDelivery; error: string }
  | { kind: "DEAD_LETTERED"; delivery: DecodedDelivery; error: string; reason: string }
  /** `delivery` is there when the message could be read (a store refused it, or it came back too often). */
  | { kind: "REJECTED"; error: string; reason: string; delivery?: DecodedDelivery };

export const REASONS = { maxAttempts: "max-attempts", rejected: "rejected" } as const;

/** The decoded delivery behind an outcome, when the message could be read. */
export function deliveryOf(outcome: Outcome): DecodedDelivery | undefined {
  return outcome.delivery;
}

/** The x-dead-reason header of a dead letter: the full error text is in the attempt log. */
export function deadReasonOf(outcome: Extract<Outcome, { kind: "DEAD_LETTERED" | "REJECTED" }>): string {
  return outcome.kind === "DEAD_LETTERED" ? outcome.reason : `${outcome.reason}: ${outcome.error}`;
}

export function statusOf(outcome: Outcome): ProcessingStatus {
  return outcome.kind;
}

/**
 * Processing succeeds once the attempt reaches the attempts the message requires
 * (the stand-in for a flaky downstream); it fails before that, and a failure at
 * the last allowed attempt dead-letters the message.
 */
export function decide(
  content: Buffer,
  headers: Record<string, unknown> | undefined,
  opts: { maxAttempts: number; maxMessageBytes: number },
): Outcome {
  let delivery: DecodedDelivery;
  try {
    delivery = decodeDelivery(content, headers, opts.maxMessageBytes);
  } catch (err) {
    if (err instanceof InvalidMessageError) return { kind: "REJECTED", error: err.message, reason: REASONS.rejected };
    throw err;
  }
  // PostgreSQL holds no NUL in text or jsonb (endput, and the log on FerretDB): such a
  // message would fail its store writes forever and hold every batch behind it
  // ("dead-letters a message the stores cannot hold and keeps consuming").
  const nul = storedStrings(delivery).find((s) => s.includes("\u0000"));
  if (nul !== undefined)
    return { kind: "REJECTED", error: "a field holds a NUL character, which the stores cannot hold", reason: REASONS.rejected };
  const { attempt } = delivery;
  const required = delivery.message.requiredAttempts;
  if (attempt >= required) return { kind: "SUCCEEDED", delivery };
  const error = `attempt ${attempt} failed: the order needs ${required} attempts`;
  if (attempt < opts.maxAttempts) return { kind: "RETRY_SCHEDULED", delivery, error };
  return {
    kind: "DEAD_LETTERED",
    delivery,
    error: `${error}; giving up after ${attempt} of ${opts.maxAttempts} attempts`,
    reason: REASONS.maxAttempts,
  };
}

/**
 * A copy delivered more often than allowed: whatever keeps it from being processed (it fails its
 * consumer every time, or crashes it), it goes to the DLQ instead of coming back forever.
 */
export function rejectRedelivered(
  content: Buffer,
  headers: Record<string, unknown> | undefined,
  redeliveries: number,
  opts: { maxRedeliveries: number; maxMessageBytes: number },
): Extract<Outcome, { kind: "REJECTED" }> {
  let delivery: DecodedDelivery | undefined;
  try {
    delivery = decodeDelivery(content, headers, opts.maxMessageBytes);
  } catch {
    delivery = undefined;
  }
  return {
    kind: "REJECTED",
    error: `redelivered ${redeliveries} times, more than the ${opts.maxRedeliveries} allowed (CONSUMER_MAX_REDELIVERIES)`,
    reason: REASONS.rejected,
    ...(delivery ? { delivery } : {}),
  };
}

/** A readable message that a store refuses to hold whatever the retries. */
export function rejectRefused(delivery: DecodedDelivery, refusal: Error): Extract<Outcome, { kind: "REJECTED" }> {
  return { kind: "REJECTED", error: refusal.message, reason: REASONS.rejected, delivery };
}

/** The free-text fields of a message that reach the stores (the others are enums or patterns). */
function storedStrings({ message }: DecodedDelivery): string[] {
  return [message.order.product];
}
