// The sink: orders that were processed successfully.
import type { System } from "../../../common/contract.ts";
import type { EndputOrder as EndputRow } from "../../../common/prisma/endput/client.ts";
import { badInput } from "../errors.ts";
import { builder } from "./builder.ts";
import { decodeCursor, encodeCursor, forwardOnly, pageOf } from "./connection.ts";
import { SystemEnum } from "./enums.ts";

export const EndputOrder = builder.objectRef<EndputRow>("EndputOrder").implement({
  description: "An order that reached the endput database",
  fields: (t) => ({
    id: t.exposeInt("id"),
    system: t.field({ type: SystemEnum, resolve: (o) => o.sourceSystem }),
    sourceOrderId: t.exposeInt("sourceOrderId"),
    messageId: t.id({ resolve: (o) => o.messageId }),
    product: t.exposeString("product"),
    price: t.string({ resolve: (o) => o.price.toFixed(2) }),
    securityCheck: t.exposeBoolean("securityCheck"),
    attempts: t.exposeInt("attempts"),
    processedAt: t.expose("processedAt", { type: "DateTime" }),
  }),
});

builder.queryField("endputOrders", (t) =>
  t.connection(
    {
      type: EndputOrder,
      description: "Endput rows in id order",
      args: { system: t.arg({ type: SystemEnum }) },
      resolve: async (_root, args, ctx) => {
        const { first, after } = forwardOnly(args);
        const afterKey = decodeCursor("EndputOrder", after);
        const afterId = afterKey === undefined ? undefined : Number(afterKey);
        if (afterId !== undefined && !Number.isSafeInteger(afterId)) throw badInput("after is not a valid cursor", "after");
        const where = {
          ...(args.system ? { sourceSystem: args.system as System } : {}),
          ...(afterId !== undefined ? { id: { gt: afterId } } : {}),
        };
        const [rows, totalCount] = await ctx.budget.run("postgresql", () =>
          Promise.all([
            ctx.endput.endputOrder.findMany({ where, orderBy: { id: "asc" }, take: first + 1 }),
            ctx.endput.endputOrder.count({ where: args.system ? { sourceSystem: args.system } : {} }),
          ]),
        );
        return { ...pageOf(rows, first, (o) => encodeCursor("EndputOrder", o.id), after != null), totalCount };
      },
    },
    {
      name: "EndputOrderConnection",
      fields: (t) => ({
        totalCount: t.int({ resolve: (conn) => (conn as unknown as { totalCount: number }).totalCount }),
      }),
    },
    { name: "EndputOrderEdge" },
  ),
);
