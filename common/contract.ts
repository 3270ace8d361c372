// The message both systems publish and the consumer processes. Validated at
// both ends: the gateway never sends what the consumer would reject.
//
// Evolution: the body is read leniently (fields a reader does not know are
// ignored, and forwarded untouched with the raw bytes), so adding an optional
// field keeps the version. A change a reader must understand to process the
// message correctly bumps CONTRACT_VERSION, a major version carried in the
// x-contract-version header; a consumer rejects a major it does not know. A
// message without the header is version 1, the contract before it had one. The
// version is a header rather than a body field so that the body this version
// sends is exactly what consumers of the unversioned, strict contract accept.
import { createHash, randomUUID } from "node:crypto";

import { z } from "zod";

export const SYSTEMS = ["SYSTEM1", "SYSTEM2"] as const;
export type System = (typeof SYSTEMS)[number];

export const PROCESSING_STATUSES = [
  "RETRY_SCHEDULED",
  "SUCCEEDED",
  "DEAD_LETTERED",
  "REJECTED",
  "REDRIVEN",
  "DISCARDED",
] as const;
export type ProcessingStatus = (typeof PROCESSING_STATUSES)[number];

/** AMQP header names. Attempt numbers start at 1; a redrive starts a new round at attempt 1. */
export const HEADERS = {
  attempt: "x-attempt",
  round: "x-round",
  deadReason: "x-dead-reason",
  deadAttempts: "x-dead-attempts",
  deadAt: "x-dead-at",
  consumerId: "x-consumer-id",
  /** Unique per published copy: a redelivery keeps it, a republish or a forward gets a new one. */
  copyId: "x-copy-id",
  /** The message contract's major version (absent: 1). */
  contractVersion: "x-contract-version",
} as const;

/** The major version of the contract this code writes and reads. */
export const CONTRACT_VERSION = 1;

/** The headers that say which contract a message follows. */
export function contractHeaders(): Record<string, unknown> {
  return { [HEADERS.contractVersion]: CONTRACT_VERSION };
}

export const PRICE_PATTERN = /^\d{1,10}\.\d{2}$/;

// z.object strips the keys it does not know: a newer publisher's extra fields are ignored.
export const orderMessageSchema = z.object({
  messageId: z.uuid(),
  source: z.object({
    system: z.enum(SYSTEMS),
    orderId: z.number().int().positive().max(2_147_483_647),
  }),
  order: z.object({
    product: z.string().min(1).max(200),
    price: z.string().regex(PRICE_PATTERN, { error: "price must be a decimal string with two places" }),
    securityCheck: z.boolean(),
  }),
  requiredAttempts: z.number().int().min(1).max(1000),
  publishedAt: z.iso.datetime(),
});

export type OrderMessage = z.infer<typeof orderMessageSchema>;

export const CONTENT_TYPE = "application/json";

export class InvalidMessageError extends Error {
  override name = "InvalidMessageError";
}

function formatIssues(error: z.ZodError): string {
  return error.issues
    .slice(0, 5)
    .map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`)
    .join("; ");
}

export function encodeMessage(message: OrderMessage): Buffer {
  const parsed = orderMessageSchema.safeParse(message);
  if (!parsed.success) throw new InvalidMessageError(`invalid order message: ${formatIssues(parsed.error)}`);
  return Buffer.from(JSON.stringify(parsed.data));
}

export interface DecodedDelivery {
  message: OrderMessage;
  attempt: number;
  round: number;
}

function positiveIntHeader(headers: Record<string, unknown>, name: string, required: boolean): number {
  const raw = headers[name];
  if (raw === undefined || raw === null) {
    if (required) throw new InvalidMessageError(`missing header ${name}`);
    return 0;
  }
  const n = typeof raw === "number" ? raw : typeof raw === "string" && /^\d+$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(n) || n < (required ? 1 : 0)) throw new InvalidMessageError(`header ${name} is not a valid count`);
  return n;
}

function contractVersionOf(headers: Record<string, unknown>): number {
  const raw = headers[HEADERS.contractVersion];
  if (raw === undefined || raw === null) return 1;
  const v = typeof raw === "number" ? raw : typeof raw === "string" && /^\d+$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(v) || v < 1)
    throw new InvalidMessageError(`header ${HEADERS.contractVersion} is not a valid version`);
  return v;
}

/** Turns raw delivery bytes and headers into a message; throws InvalidMessageError with the reason. */
export function decodeDelivery(content: Buffer, headers: Record<string, unknown> | undefined, maxBytes: number): DecodedDelivery {
  if (content.length > maxBytes)
    throw new InvalidMessageError(`message of ${content.length} bytes exceeds the ${maxBytes}-byte maximum`);
  const h = headers ?? {};
  const attempt = positiveIntHeader(h, HEADERS.attempt, true);
  const round = positiveIntHeader(h, HEADERS.round, false);
  const version = contractVersionOf(h);
  if (version !== CONTRACT_VERSION)
    throw new InvalidMessageError(
      `contract version ${version} is not supported: this consumer reads version ${CONTRACT_VERSION}`,
    );
  let json: unknown;
  try {
    json = JSON.parse(content.toString("utf8"));
  } catch {
    throw new InvalidMessageError("body is not valid JSON");
  }
  const parsed = orderMessageSchema.safeParse(json);
  if (!parsed.success) throw new InvalidMessageError(`body does not match the order contract: ${formatIssues(parsed.error)}`);
  return { message: parsed.data, attempt, round };
}

/** Headers for a new physical copy of a message (every publish is one). */
export function withNewCopyId(headers: Record<string, unknown> | undefined): Record<string, unknown> {
  return { ...headers, [HEADERS.copyId]: randomUUID() };
}

/**
 * Which physical copy a delivery is. Copies from publishers that set no copy id
 * are told apart by their bytes, so identical ones count as the same copy.
 */
const DERIVED_COPY_PREFIX = "sha1:";

/** Whether copyIdOf derived the copy id from the content (the delivery carried none). */
export const isDerivedCopyId = (copy: string) => copy.startsWith(DERIVED_COPY_PREFIX);

export function copyIdOf(content: Buffer, headers: Record<string, unknown> | undefined): string {
  const id = headers?.[HEADERS.copyId];
  // The id is stored in the attempt log, which on FerretDB (PostgreSQL jsonb) holds no NUL.
  if (typeof id === "string" && id.length > 0 && id.length <= 100 && !id.includes("\u0000")) return id;
  return `${DERIVED_COPY_PREFIX}${createHash("sha1")
    .update(content)
    .update(JSON.stringify(headers ?? {}))
    .digest("base64url")}`;
}

/** The seed's rule: true orders need 1..maxAttempts attempts, false orders one more than allowed. */
export function requiredAttemptsFor(securityCheck: boolean, maxAttempts: number, random = Math.random): number {
  return securityCheck ? 1 + Math.floor(random() * maxAttempts) : maxAttempts + 1;
}
