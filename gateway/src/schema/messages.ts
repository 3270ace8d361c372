// The attempt log: one entry per processing attempt, searchable by message, system, status and order.
import type { LogDocument } from "../../../common/attempt-log.ts";
import { parseObjectId } from "../../../common/attempt-log.ts";
import { badInput } from "../errors.ts";
import { builder } from "./builder.ts";
import { decodeCursor, encodeCursor, forwardOnly, pageOf } from "./connection.ts";
import { ProcessingStatusEnum, SystemEnum } from "./enums.ts";

export const LogEntry = builder.objectRef<LogDocument>("LogEntry").implement({
  description: "One processing attempt. Fields about the order are null for a REJECTED message that could not be read",
  fields: (t) => ({
    id: t.id({ resolve: (d) => String(d._id) }),
    messageId: t.id({ resolve: (d) => d.messageId }),
    round: t.exposeInt("round", { description: "0 for the first delivery, +1 for each redrive" }),
    attempt: t.exposeInt("attempt"),
    status: t.field({ type: ProcessingStatusEnum, resolve: (d) => d.status }),
    requiredAttempts: t.exposeInt("requiredAttempts", { nullable: true }),
    maxAttempts: t.exposeInt("maxAttempts"),
    system: t.field({ type: SystemEnum, nullable: true, resolve: (d) => d.system }),
    orderId: t.exposeInt("orderId", { nullable: true }),
    product: t.string({ nullable: true, resolve: (d) => d.order?.product ?? null }),
    price: t.string({ nullable: true, resolve: (d) => d.order?.price ?? null }),
    securityCheck: t.boolean({ nullable: true, resolve: (d) => d.order?.securityCheck ?? null }),
    publishedAt: t.field({ type: "DateTime", nullable: true, resolve: (d) => d.publishedAt ?? d.source?.publishedAt ?? null }),
    error: t.exposeString("error", { nullable: true }),
    processedAt: t.expose("processedAt", { type: "DateTime" }),
    expiresAt: t.field({
      type: "DateTime",
      nullable: true,
      description: "Null while retained (in the DLQ)",
      resolve: (d) => (d.retained ? null : d.expiresAt),
    }),
    durationMs: t.exposeFloat("durationMs", { nullable: true }),
    consumerId: t.exposeString("consumerId"),
    traceId: t.string({
      nullable: true,
      description: "The OpenTelemetry trace of the message's order; null when tracing was off",
      resolve: (d) => d.traceId ?? null,
    }),
    traceUrl: t.string({
      nullable: true,
      description: "The trace in the tracing UI, from TRACE_URL_TEMPLATE; null without a trace id or a template",
      resolve: (d, _args, ctx) => {
        const template = ctx.config.tracing.urlTemplate;
        return d.traceId && template ? template.replaceAll("{traceId}", d.traceId) : null;
      },
    }),
  }),
});

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

builder.queryField("messageHistory", (t) =>
  t.field({
    type: [LogEntry],
    description: "Every attempt of one message, in processing order; empty for an unknown id",
    args: { messageId: t.arg.id({ required: true }) },
    resolve: (_root, args, ctx) => {
      const id = String(args.messageId);
      if (!UUID.test(id)) throw badInput("messageId must be a UUID", "messageId");
      return ctx.budget.run("mongodb", () => ctx.log.history(id.toLowerCase()));
    },
  }),
);

builder.queryField("messages", (t) =>
  t.connection(
    {
      type: LogEntry,
      description: "Attempt log entries, newest first, filtered by system, status and order id",
      args: {
        system: t.arg({ type: SystemEnum }),
        status: t.arg({ type: ProcessingStatusEnum }),
        orderId: t.arg.int(),
      },
      resolve: async (_root, args, ctx) => {
        const { first, after } = forwardOnly(args);
        const afterKey = decodeCursor("LogEntry", after);
        const afterId = afterKey === undefined ? undefined : parseObjectId(afterKey);
        if (afterKey !== undefined && !afterId) throw badInput("after is not a valid cursor", "after");
        const filter = { system: args.system, status: args.status, orderId: args.orderId };
        const page = () => ctx.log.page(filter, first + 1, afterId);
        const rows = await ctx.budget.run("mongodb", () => (ctx.log.scans(filter) ? ctx.logScans.run(page) : page()));
        return pageOf(rows, first, (d) => encodeCursor("LogEntry", String(d._id)), after != null);
      },
    },
    { name: "LogEntryConnection" },
    { name: "LogEntryEdge" },
  ),
);
