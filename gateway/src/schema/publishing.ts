// Publishing pending rows, the per-system cursors, and resetting them.
import { type System, SYSTEMS } from "../../../common/contract.ts";
import type { Context } from "../context.ts";
import { createCursors } from "../services/cursors.ts";
import { publishPending, type PublishResult as Result, resetCursor } from "../services/publisher.ts";
import { builder } from "./builder.ts";
import { SystemEnum } from "./enums.ts";

interface CursorShape {
  system: System;
  lastPublishedId: number;
  pending: number;
}

async function cursorOf(ctx: Context, system: System): Promise<CursorShape> {
  const lastPublishedId = await ctx.budget.run("redis", () => createCursors(ctx.redis, ctx.config).get(system));
  const pending = await ctx.budget.run("postgresql", () =>
    ctx.sources[system].order.count({ where: { id: { gt: lastPublishedId } } }),
  );
  return { system, lastPublishedId, pending };
}

const Cursor = builder.objectRef<CursorShape>("Cursor").implement({
  description: "Where publishing of a system stands: the last published id and how many rows wait after it",
  fields: (t) => ({
    system: t.expose("system", { type: SystemEnum }),
    lastPublishedId: t.exposeInt("lastPublishedId"),
    pending: t.exposeInt("pending"),
  }),
});

const PublishResult = builder.objectRef<Result>("PublishResult").implement({
  fields: (t) => ({
    system: t.expose("system", { type: SystemEnum }),
    published: t.exposeInt("published"),
    fromId: t.exposeInt("fromId", { nullable: true }),
    toId: t.exposeInt("toId", { nullable: true }),
    cursor: t.exposeInt("cursor"),
    waitingOnTransactions: t.exposeBoolean("waitingOnTransactions", {
      description: "True when rows were held back at a gap in the ids that a transaction still open on the source may fill",
    }),
  }),
});

builder.queryField("cursors", (t) =>
  t.field({
    type: [Cursor],
    // Computed once per request, however many aliases ask for it.
    resolve: (_root, _args, ctx) => ctx.budget.once("cursors", () => Promise.all(SYSTEMS.map((s) => cursorOf(ctx, s)))),
  }),
);

builder.mutationField("publishPending", (t) =>
  t.field({
    type: PublishResult,
    description: "Publishes the rows after the system's cursor, in id order; `limit` caps how many",
    args: { system: t.arg({ type: SystemEnum, required: true }), limit: t.arg.int() },
    resolve: (_root, args, ctx) =>
      publishPending({
        system: args.system,
        limit: args.limit,
        source: ctx.sources[args.system],
        broker: ctx.broker,
        cursors: createCursors(ctx.redis, ctx.config),
        config: ctx.config,
        logger: ctx.logger,
        tracing: ctx.tracing,
        metrics: ctx.metrics,
      }),
  }),
);

builder.mutationField("resetCursor", (t) =>
  t.field({
    type: Cursor,
    description: "Moves the cursor (0 republishes everything; the sink is idempotent)",
    args: { system: t.arg({ type: SystemEnum, required: true }), to: t.arg.int({ required: true }) },
    resolve: async (_root, args, ctx) => {
      await resetCursor({ system: args.system, to: args.to, cursors: createCursors(ctx.redis, ctx.config) });
      return cursorOf(ctx, args.system);
    },
  }),
);
