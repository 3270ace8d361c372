// Fills a source system with random orders in batches, inside one transaction.
import type { System } from "../../../common/contract.ts";
import type { SourceClient } from "../../../common/prisma-clients.ts";
import { badInput, using } from "../errors.ts";

const PRODUCTS = [
  "Keyboard",
  "Mouse",
  "Monitor",
  "Laptop",
  "Headset",
  "Webcam",
  "Desk lamp",
  "Chair",
  "USB hub",
  "SSD 1TB",
  "Router",
  "Microphone",
  "Docking station",
  "Tablet",
  "Smartphone",
  "Charger",
  "Backpack",
  "Notebook",
  "Pen set",
  "Speaker",
];
const BATCH = 5000;

export interface SeedResult {
  system: System;
  inserted: number;
  firstId: number | null;
  lastId: number | null;
  securityCheckTrue: number;
}

export async function seedOrders(
  client: SourceClient,
  system: System,
  count: number,
  ratio: number,
  maxCount: number,
  random: () => number = Math.random,
): Promise<SeedResult> {
  if (!Number.isInteger(count) || count < 1 || count > maxCount)
    throw badInput(`count must be between 1 and ${maxCount}`, "count");
  if (!Number.isFinite(ratio) || ratio < 0 || ratio > 1)
    throw badInput("securityCheckRatio must be between 0 and 1", "securityCheckRatio");

  // Exactly round(count * ratio) true orders, in random positions.
  const trueCount = Math.round(count * ratio);
  const checks = Array.from({ length: count }, (_, i) => i < trueCount);
  for (let i = checks.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [checks[i], checks[j]] = [checks[j]!, checks[i]!];
  }

  const ids = await using("postgresql", () =>
    client.$transaction(
      async (tx) => {
        let first: number | null = null;
        let last: number | null = null;
        for (let start = 0; start < count; start += BATCH) {
          const n = Math.min(BATCH, count - start);
          const products = Array.from({ length: n }, () => PRODUCTS[Math.floor(random() * PRODUCTS.length)]!);
          const prices = Array.from({ length: n }, () => (1 + Math.floor(random() * 99_900) / 100).toFixed(2));
          const flags = checks.slice(start, start + n);
          const rows = await tx.$queryRaw<{ min: number; max: number }[]>`
            with ins as (
              insert into orders (product, price, security_check)
              select * from unnest(${products}::text[], ${prices}::numeric[], ${flags}::boolean[])
              returning id
            ) select min(id)::int as min, max(id)::int as max from ins`;
          first ??= rows[0]!.min;
          last = rows[0]!.max;
        }
        return { first, last };
      },
      { timeout: 120_000, maxWait: 10_000 },
    ),
  );
  return { system, inserted: count, firstId: ids.first, lastId: ids.last, securityCheckTrue: trueCount };
}
