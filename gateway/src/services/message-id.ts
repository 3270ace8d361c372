// One message id per source row, derived from (system, order id) as a name-based
// UUID (RFC 9562 version 5): republishing a row yields the same id, so the
// consumer recognises attempts it already handled and the history stays one.
import { createHash } from "node:crypto";

import type { System } from "../../../common/contract.ts";

const NAMESPACE = Buffer.from("6f1c3a52d0b84b7e9a1e2c4d5f607182", "hex");

export function orderMessageId(system: System, orderId: number): string {
  const hash = createHash("sha1").update(NAMESPACE).update(`${system}:${orderId}`).digest();
  hash[6] = (hash[6]! & 0x0f) | 0x50;
  hash[8] = (hash[8]! & 0x3f) | 0x80;
  const h = hash.subarray(0, 16).toString("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/**
 * A stable number in [0, 1) from a message id: a republished row draws the same
 * requiredAttempts, so its replay behaves exactly like the first publish.
 */
export function fractionOf(messageId: string): number {
  return createHash("sha1").update(messageId).digest().readUInt32BE(0) / 2 ** 32;
}
