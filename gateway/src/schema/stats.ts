// Pipeline statistics and reconciliation.
import {
  type PipelineStats as Stats,
  pipelineStats,
  type QueueStats as Queue,
  type SystemStats as PerSystem,
} from "../services/stats.ts";
import { builder } from "./builder.ts";
import { ProcessingStatusEnum, SystemEnum } from "./enums.ts";

const StatusCount = builder.objectRef<{ status: Stats["attempts"][number]["status"]; count: number }>("StatusCount").implement({
  fields: (t) => ({
    status: t.field({ type: ProcessingStatusEnum, resolve: (s) => s.status }),
    count: t.exposeInt("count"),
  }),
});

const QueueStats = builder.objectRef<Queue>("QueueStats").implement({
  fields: (t) => ({
    name: t.exposeString("name"),
    messages: t.exposeInt("messages", { description: "Messages ready in the queue (not counting those being processed)" }),
    consumers: t.exposeInt("consumers"),
  }),
});

const SystemStats = builder.objectRef<PerSystem>("SystemStats").implement({
  description: "Reconciliation of one system: every published order is in the sink, dead-lettered, or in flight",
  fields: (t) => ({
    system: t.field({ type: SystemEnum, resolve: (s) => s.system }),
    sourceRows: t.exposeInt("sourceRows"),
    published: t.exposeInt("published", {
      description: "Source rows the broker confirmed at least once (a republish after resetCursor does not count a row again)",
    }),
    succeeded: t.exposeInt("succeeded"),
    deadLettered: t.exposeInt("deadLettered", { description: "Dead-lettered and neither redriven nor discarded since" }),
    inFlight: t.exposeInt("inFlight", { description: "published - succeeded - deadLettered - discarded" }),
    endputRows: t.exposeInt("endputRows"),
    attempts: t.field({ type: [StatusCount], description: "Attempts logged, by outcome", resolve: (s) => s.attempts }),
  }),
});

const PipelineStats = builder.objectRef<Stats>("PipelineStats").implement({
  fields: (t) => ({
    queues: t.field({ type: [QueueStats], resolve: (s) => s.queues }),
    systems: t.field({ type: [SystemStats], resolve: (s) => s.systems }),
    attempts: t.field({
      type: [StatusCount],
      description: "Attempts logged, by outcome, over all systems",
      resolve: (s) => s.attempts,
    }),
  }),
});

builder.queryField("pipelineStats", (t) =>
  t.field({
    type: PipelineStats,
    // Computed once per request, however many aliases ask for it; one slot of the request's budget.
    resolve: (_root, _args, ctx) => ctx.budget.once("pipelineStats", () => ctx.budget.run("rabbitmq", () => pipelineStats(ctx))),
  }),
);
