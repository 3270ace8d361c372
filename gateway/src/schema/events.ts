// Live processing events, fed by the consumers through Redis to every gateway.
import { eventsTopic, type ProcessingEvent as Event } from "../../../common/events.ts";
import { DomainError } from "../errors.ts";
import { FELL_BEHIND } from "../pubsub.ts";
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
    description:
      "Every processing attempt as it is logged, optionally filtered. A subscriber that falls " +
      "GATEWAY_SUBSCRIPTION_BUFFER events behind gets a SUBSCRIBER_TOO_SLOW error and the end of the stream.",
    args: { system: t.arg({ type: SystemEnum }), status: t.arg({ type: ProcessingStatusEnum }) },
    subscribe: (_root, args, ctx) =>
      ctx.pubsub.subscribe<Event>(
        eventsTopic(ctx.config),
        (e) => (!args.system || e.system === args.system) && (!args.status || e.status === args.status),
      ) as AsyncIterable<Event>,
    resolve: (event, _args, ctx) => {
      if ((event as Event | typeof FELL_BEHIND) === FELL_BEHIND) throw subscriberTooSlow(ctx.config.gateway.subscriptionBuffer);
      return event;
    },
  }),
);

const subscriberTooSlow = (buffer: number) =>
  new DomainError(
    "SUBSCRIBER_TOO_SLOW",
    `this subscription fell ${buffer} events behind and was ended: subscribe again (the attempt log and the counters have every event)`,
    { buffer },
  );
