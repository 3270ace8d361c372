// The dead-letter queue: its groups, peek without consuming, redrive back to the primary
// queue, and discard for good.
import type { DeadLetterGroup as Group } from "../../../common/dead-letter-groups.ts";
import type { Context } from "../context.ts";
import { boundedFirst } from "../errors.ts";
import { clientKey } from "../rate-limits.ts";
import {
  type DeadLetter as Letter,
  deadLetterGroups,
  discardDeadLetters,
  type DiscardResult as Discarded,
  type GroupsRestore as Restore,
  peekDeadLetters,
  redriveDeadLetters,
  type RedriveFilter,
  type RedriveResult as Result,
  restoreDeadLetterGroups,
} from "../services/dead-letters.ts";
import { builder } from "./builder.ts";
import { SystemEnum } from "./enums.ts";

const DeadLetter = builder.objectRef<Letter>("DeadLetter").implement({
  fields: (t) => ({
    messageId: t.id({ resolve: (d) => d.messageId }),
    system: t.field({
      type: SystemEnum,
      nullable: true,
      description: "Null for a REJECTED message that could not be read",
      resolve: (d) => d.system,
    }),
    orderId: t.exposeInt("orderId", { nullable: true }),
    reason: t.exposeString("reason", { description: "The reason the consumer recorded (x-dead-reason)" }),
    group: t.exposeString("group", { description: "The reason of its group: max-attempts, rejected:<kind> or unknown" }),
    attempts: t.exposeInt("attempts"),
    round: t.exposeInt("round"),
    deadAt: t.field({ type: "DateTime", nullable: true, resolve: (d) => d.deadAt }),
  }),
});

const RedriveResult = builder.objectRef<Result>("RedriveResult").implement({
  fields: (t) => ({
    matched: t.exposeInt("matched"),
    moved: t.exposeInt("moved", { description: "Published back to the primary queue as a new round" }),
    alreadyRedriven: t.exposeInt("alreadyRedriven", {
      description:
        "Copies whose round had been redriven already by a redrive that stopped before acking them: acked without a new round (a dry run only counts them)",
    }),
    dryRun: t.exposeBoolean("dryRun"),
  }),
});

builder.queryField("deadLetters", (t) =>
  t.field({
    type: [DeadLetter],
    description: "The oldest dead letters, without consuming them",
    args: { first: t.arg.int() },
    resolve: (_root, args, ctx) => {
      const first = boundedFirst(args.first);
      return ctx.budget.run("rabbitmq", () =>
        peekDeadLetters({ broker: ctx.broker, redis: ctx.redis, config: ctx.config, first }),
      );
    },
  }),
);

/** Which dead letters a redrive or a discard takes. */
const filterArgs = builder.args((t) => ({
  system: t.field({ type: SystemEnum }),
  reason: t.string({
    description: "A group's reason (max-attempts, rejected:not-json), a class of them (rejected) or a recorded reason",
  }),
  messageIds: t.idList(),
  limit: t.int(),
  dryRun: t.boolean(),
}));

/** What a DLQ walk needs from the request: the filter, who asked, and the stores. */
function walkOf(args: Omit<RedriveFilter, "messageIds"> & { messageIds?: readonly (string | number)[] | null }, ctx: Context) {
  return {
    filter: { ...args, messageIds: args.messageIds?.map(String) },
    by: clientKey(ctx),
    broker: ctx.broker,
    log: ctx.log,
    redis: ctx.redis,
    config: ctx.config,
    logger: ctx.logger,
  };
}

builder.mutationField("redriveDeadLetters", (t) =>
  t.field({
    type: RedriveResult,
    description: "Moves matching dead letters back to the primary queue as a new round starting at attempt 1; dryRun only counts",
    args: filterArgs,
    resolve: (_root, args, ctx) => redriveDeadLetters({ ...walkOf(args, ctx), tracing: ctx.tracing }),
  }),
);

const DeadLetterGroup = builder.objectRef<Group>("DeadLetterGroup").implement({
  description: "The dead letters in the queue that share a system and a reason",
  fields: (t) => ({
    system: t.field({
      type: SystemEnum,
      nullable: true,
      description: "Null for messages rejected because they could not be read",
      resolve: (g) => g.system,
    }),
    reason: t.exposeString("reason", {
      description:
        "max-attempts, rejected:<kind> (too-large, bad-headers, unsupported-contract, not-json, contract-mismatch, unstorable, other)",
    }),
    count: t.exposeInt("count"),
    oldestDeadAt: t.field({ type: "DateTime", resolve: (g) => g.oldestDeadAt }),
    newestDeadAt: t.field({ type: "DateTime", resolve: (g) => g.newestDeadAt }),
    sampleMessageId: t.id({ description: "The group's oldest dead letter", resolve: (g) => g.sampleMessageId }),
  }),
});

const DiscardResult = builder.objectRef<Discarded>("DiscardResult").implement({
  fields: (t) => ({
    matched: t.exposeInt("matched"),
    discarded: t.exposeInt("discarded", { description: "Logged as DISCARDED and removed from the queue (0 in a dry run)" }),
    dryRun: t.exposeBoolean("dryRun"),
    letters: t.field({
      type: [DeadLetter],
      description: "The first 100 matching dead letters: what was, or in a dry run would be, discarded",
      resolve: (r) => r.letters,
    }),
  }),
});

builder.queryField("deadLetterGroups", (t) =>
  t.field({
    type: [DeadLetterGroup],
    description:
      "The dead letters grouped by system and reason, largest group first; kept as they come and go, not read from the queue",
    args: { system: t.arg({ type: SystemEnum }) },
    resolve: (_root, args, ctx) =>
      ctx.budget.run("redis", () => deadLetterGroups({ redis: ctx.redis, config: ctx.config, system: args.system })),
  }),
);

builder.mutationField("discardDeadLetters", (t) =>
  t.field({
    type: DiscardResult,
    description:
      "Removes matching dead letters for good, each logged as DISCARDED before it leaves the queue; needs a system, a reason or messageIds; dryRun only lists",
    args: filterArgs,
    resolve: (_root, args, ctx) => discardDeadLetters(walkOf(args, ctx)),
  }),
);

const DeadLetterGroupsRestore = builder.objectRef<Restore>("DeadLetterGroupsRestore").implement({
  fields: (t) => ({
    walked: t.exposeInt("walked", { description: "Dead letters read from the queue" }),
    restored: t.exposeInt("restored", { description: "Dead letters in the queue that no group counted, now added" }),
    removed: t.exposeInt("removed", {
      description: "Members taken out: their dead letter was not in the queue and its history says it left (0 unless complete)",
    }),
    complete: t.exposeBoolean("complete", {
      description: "Whether every dead letter the queue held was read (a walk stops at 100,000)",
    }),
  }),
});

builder.mutationField("restoreDeadLetterGroups", (t) =>
  t.field({
    type: DeadLetterGroupsRestore,
    description:
      "Reconciles the dead-letter groups with the queue: reads it without consuming it, adds every dead letter no group counts (after Redis lost the groups) and takes out members whose dead letter left it",
    resolve: (_root, _args, ctx) =>
      restoreDeadLetterGroups({ broker: ctx.broker, redis: ctx.redis, config: ctx.config, log: ctx.log, logger: ctx.logger }),
  }),
);
