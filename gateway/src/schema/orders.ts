// Source orders: the System enum, the Order type shared by both systems, and seeding.
import { parsePrismaCursor } from "@pothos/plugin-prisma";

import type { System } from "../../../common/contract.ts";
import type { Order as OrderRow } from "../../../common/prisma/source/client.ts";
import { seedOrders } from "../services/seed.ts";
import { builder } from "./builder.ts";
import { withPagingChecked } from "./connection.ts";
import { SystemEnum } from "./enums.ts";
import { LogEntry } from "./messages.ts";

/** Rows carry the system they were read from, so fields like `history` know where they came from. */
type SystemRow = OrderRow & { system?: System };

export const Order = builder.prismaObject("Order", {
  description: "An order in a source system",
  fields: (t) => ({
    id: t.exposeInt("id"),
    product: t.exposeString("product"),
    price: t.string({ description: "Decimal with two places", resolve: (o) => o.price.toFixed(2) }),
    securityCheck: t.exposeBoolean("securityCheck"),
    createdAt: t.expose("createdAt", { type: "DateTime" }),
    system: t.field({ type: SystemEnum, resolve: (o) => (o as SystemRow).system ?? "SYSTEM1" }),
    history: t.field({
      type: [LogEntry],
      description: "Every processing attempt of this order's message, in processing order",
      resolve: (o, _args, ctx) => ctx.loaders.history.load({ system: (o as SystemRow).system ?? "SYSTEM1", orderId: o.id }),
    }),
  }),
});

/** The connection's cursors are Pothos Prisma cursors around the order id. */
function isOrderCursor(cursor: string): boolean {
  try {
    return Number.isSafeInteger(parsePrismaCursor(cursor));
  } catch {
    return false;
  }
}

builder.queryField("orders", (t) =>
  withPagingChecked(
    t.prismaConnection(
      {
        type: "Order",
        cursor: "id",
        maxSize: 500,
        description: "Orders of one source system, oldest first",
        args: { system: t.arg({ type: SystemEnum, required: true }) },
        resolve: async (query, _root, args, ctx) => {
          const rows = await ctx.budget.run("postgresql", () =>
            ctx.sources[args.system].order.findMany({ ...query, orderBy: { id: "asc" } }),
          );
          return rows.map((r) => Object.assign(r, { system: args.system }));
        },
        totalCount: (_conn, args, ctx) => ctx.budget.run("postgresql", () => ctx.sources[args.system].order.count()),
      },
      { name: "OrderConnection" },
      { name: "OrderEdge" },
    ),
    isOrderCursor,
  ),
);

const SeedResult = builder
  .objectRef<{ system: System; inserted: number; firstId: number | null; lastId: number | null; securityCheckTrue: number }>(
    "SeedResult",
  )
  .implement({
    fields: (t) => ({
      system: t.expose("system", { type: SystemEnum }),
      inserted: t.exposeInt("inserted"),
      firstId: t.exposeInt("firstId", { nullable: true }),
      lastId: t.exposeInt("lastId", { nullable: true }),
      securityCheckTrue: t.exposeInt("securityCheckTrue"),
    }),
  });

builder.mutationField("seedOrders", (t) =>
  t.field({
    type: SeedResult,
    description: "Inserts `count` random orders; a fraction `securityCheckRatio` (default 0.5) has security_check = true",
    args: {
      system: t.arg({ type: SystemEnum, required: true }),
      count: t.arg.int({ required: true }),
      securityCheckRatio: t.arg.float(),
    },
    resolve: (_root, args, ctx) =>
      seedOrders(
        ctx.sources[args.system],
        args.system,
        args.count,
        args.securityCheckRatio ?? 0.5,
        ctx.config.gateway.seedMaxCount,
      ),
  }),
);
