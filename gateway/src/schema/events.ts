// Live processing events, fed by the consumers through Redis to every gateway.
import { eventsTopic, type ProcessingEvent as Event } from "../../../common/events.ts";
import { builder } from "./builder.ts";
import { ProcessingStatusEnum, SystemEnum } from "./enums.ts";

const ProcessingEvent = builder.objectRef<Event>("ProcessingEvent").implement({
  fields: (t) => ({
    messageId: t.id({ resolve: (e) => e.messageId }),
    system: t.field({
      type: SystemEnum,
      nullable: true,
      description: "Null for a REJECTED message that could not be read",
      resolve: (e) => e.system,
    }),
    orderId: t.exposeInt("orderId", { nullable: true }),
    attempt: t.exposeInt("attempt"),
    round: t.exposeInt("round"),
    status: t.field({ type: ProcessingStatusEnum, resolve: (e) => e.status }),
    error: t.exposeString("error", { nullable: true }),
    at: t.field({ type: "DateTime", resolve: (e) => e.at }),
  }),
});

builder.subscriptionField("processingEvents", (t) =>
  t.field({
    type: ProcessingEvent,
    description: "Every processing attempt as it is logged, optionally filtered",
    args: { system: t.arg({ type: SystemEnum }), status: t.arg({ type: ProcessingStatusEnum }) },
    subscribe: async function* (_root, args, ctx) {
      for await (const event of ctx.pubsub.subscribe(eventsTopic(ctx.config))) {
        if (args.system && event.system !== args.system) continue;
        if (args.status && event.status !== args.status) continue;
        yield event;
      }
    },
    resolve: (event) => event,
  }),
);
