// Pure mappers: what one delivery's attempt writes to the attempt log, announces as an event and
// adds to a dead-letter group. No I/O; the processor writes what they return.
import { createHash } from "node:crypto";

import type { ConsumeMessage } from "amqplib";

import type { LogDocument } from "../../common/attempt-log.ts";
import type { Config } from "../../common/config.ts";
import { HEADERS } from "../../common/contract.ts";
import { deadLetterGroupKey, groupName, groupReasonOf, type GroupSystem } from "../../common/dead-letter-groups.ts";
import type { DeadLetterEntry, ProcessingEvent } from "../../common/events.ts";
import { deadReasonOf, deliveryOf, type Outcome } from "./decide.ts";
import { deliveryLogFields } from "./records.ts";

/** Events carry the start of an error; the attempt log keeps all of it. */
const EVENT_ERROR_LENGTH = 500;

/** One delivery and what its attempt came to. */
export interface Attempt {
  msg: ConsumeMessage;
  outcome: Outcome;
  /** The physical copy this delivery is (kept across redeliveries). */
  copy: string;
  messageId: string;
}

/** What a log document takes from the consumer rather than from the delivery. */
export interface LogContext {
  maxAttempts: number;
  consumerId: string;
  /** When a non-terminal entry expires, for one processed at `now` (AttemptLog.expiryFrom). */
  expiryFrom(now: Date): Date;
}

/** The attempt-log document (and claim) of an attempt that began at `now`. */
export function toLogDocument(a: Attempt, now: Date, ctx: LogContext): LogDocument {
  const { outcome } = a;
  const failed = outcome.kind !== "SUCCEEDED";
  const terminal = outcome.kind === "DEAD_LETTERED" || outcome.kind === "REJECTED";
  const common = {
    messageId: a.messageId,
    status: outcome.kind,
    maxAttempts: ctx.maxAttempts,
    processedAt: now,
    expiresAt: terminal ? null : ctx.expiryFrom(now),
    retained: terminal,
    durationMs: null,
    consumerId: ctx.consumerId,
    copyId: a.copy,
    error: failed ? outcome.error : null,
  };
  const delivery = deliveryOf(outcome);
  if (delivery) return { ...common, ...deliveryLogFields(delivery) };
  const attempt = Number((a.msg.properties.headers ?? {})[HEADERS.attempt]);
  return {
    ...common,
    round: 0,
    attempt: Number.isSafeInteger(attempt) && attempt > 0 ? attempt : 0,
    requiredAttempts: null,
    system: null,
    orderId: null,
    publishedAt: null,
    order: null,
  };
}

/** The processing event of an attempt that began at `now`. */
export function toEvent(a: Pick<Attempt, "outcome" | "messageId">, now: Date): ProcessingEvent {
  const { outcome } = a;
  const d = deliveryOf(outcome);
  return {
    messageId: a.messageId,
    system: d?.message.source.system ?? null,
    orderId: d?.message.source.orderId ?? null,
    attempt: d?.attempt ?? 0,
    round: d?.round ?? 0,
    status: outcome.kind,
    at: now.toISOString(),
    ...(outcome.kind !== "SUCCEEDED" ? { error: outcome.error.slice(0, EVENT_ERROR_LENGTH) } : {}),
  };
}

/** The source system an attempt counts under; UNKNOWN for a message that could not be read. */
export function systemOf(a: Pick<Attempt, "outcome">): string {
  return deliveryOf(a.outcome)?.message.source.system ?? "UNKNOWN";
}

/** The dead-letter group a dead letter joins, by the reason its x-dead-reason header will carry. */
export function deadLetterOf(
  config: Config,
  a: Pick<Attempt, "outcome" | "messageId">,
  deadAt: Date,
): DeadLetterEntry | undefined {
  if (a.outcome.kind !== "DEAD_LETTERED" && a.outcome.kind !== "REJECTED") return undefined;
  // Groups name a rejection's system UNKNOWN even when the message was readable: a DLQ walk
  // cannot tell those apart from unreadable ones, and it must find the same group to remove from.
  const system: GroupSystem = a.outcome.kind === "REJECTED" ? "UNKNOWN" : (systemOf(a) as GroupSystem);
  const reason = groupReasonOf(deadReasonOf(a.outcome));
  return {
    groupKey: deadLetterGroupKey(config, system, reason),
    group: groupName(system, reason),
    messageId: a.messageId,
    deadAt,
  };
}

/**
 * The message id an attempt is logged and counted under: the contract's, else the AMQP
 * property's, else one derived from the copy. A message id the log cannot hold (a NUL, on
 * FerretDB) would fail the batch's log write forever, so such a property is not used.
 */
export function messageIdOf(msg: ConsumeMessage, outcome: Outcome, copy: string): string {
  const prop = msg.properties.messageId as unknown;
  const propId = typeof prop === "string" && !prop.includes("\u0000") ? prop : undefined;
  return deliveryOf(outcome)?.message.messageId ?? propId ?? unreadableMessageId(msg.content, copy);
}

/**
 * The id of a message whose contract could not be read and that carries no message id:
 * a name-based UUID of its bytes and copy, so every redelivery of the copy logs and
 * counts under the same id (and its claim holds), instead of a new one each time.
 */
export function unreadableMessageId(content: Buffer, copy: string): string {
  const h = createHash("sha1").update(content).update("\0").update(copy).digest();
  h[6] = (h[6]! & 0x0f) | 0x50;
  h[8] = (h[8]! & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString("hex");
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}
