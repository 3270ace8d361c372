// One message id per source row, derived from (system, order id) as a name-based
// UUID (RFC 9562 version 5): republishing a row yields the same id, so the
// consumer recognises attempts it already handled and the history stays one.
//
// Called for every published row: one-shot hashes over a reused buffer, no Hash
// objects or intermediate Buffers per id.
import { hash } from "node:crypto";

import type { System } from "../../../common/contract.ts";

const NAMESPACE = Buffer.from("6f1c3a52d0b84b7e9a1e2c4d5f607182", "hex");
// The namespace followed by the name; `system:orderId` is ASCII and short.
const input = Buffer.alloc(NAMESPACE.length + 64);
NAMESPACE.copy(input);
// The variant's high bits are 10, so the digit is 8, 9, a or b after its low two bits.
const VARIANT_DIGITS = "89ab";

export function orderMessageId(system: System, orderId: number): string {
  const nameLength = input.write(`${system}:${orderId}`, NAMESPACE.length, "latin1");
  const h = hash("sha1", input.subarray(0, NAMESPACE.length + nameLength));
  // Version 5 in the 13th digit, the variant in the 17th; the first 32 hex digits make the UUID.
  const variant = VARIANT_DIGITS[Number.parseInt(h[16]!, 16) & 3]!;
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-${variant}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/**
 * A stable number in [0, 1) from a message id: a republished row draws the same
 * requiredAttempts, so its replay behaves exactly like the first publish.
 */
export function fractionOf(messageId: string): number {
  return Number.parseInt(hash("sha1", messageId).slice(0, 8), 16) / 2 ** 32;
}
