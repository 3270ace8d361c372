// The dead-letter queue: peek without consuming, and redrive back to the primary queue.
import { boundedFirst } from "../errors.ts";
import {
  type DeadLetter as Letter,
  peekDeadLetters,
  redriveDeadLetters,
  type RedriveResult as Result,
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
    reason: t.exposeString("reason"),
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

builder.mutationField("redriveDeadLetters", (t) =>
  t.field({
    type: RedriveResult,
    description: "Moves matching dead letters back to the primary queue as a new round starting at attempt 1; dryRun only counts",
    args: {
      system: t.arg({ type: SystemEnum }),
      reason: t.arg.string({ description: "The reason, e.g. max-attempts or rejected" }),
      messageIds: t.arg.idList(),
      limit: t.arg.int(),
      dryRun: t.arg.boolean(),
    },
    resolve: (_root, args, ctx) =>
      redriveDeadLetters({
        filter: { ...args, messageIds: args.messageIds?.map(String) },
        broker: ctx.broker,
        log: ctx.log,
        redis: ctx.redis,
        config: ctx.config,
        logger: ctx.logger,
        tracing: ctx.tracing,
      }),
  }),
);
