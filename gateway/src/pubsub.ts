import { createRedisEventTarget } from "@graphql-yoga/redis-event-target";
import { createPubSub } from "graphql-yoga";
import type { Redis } from "ioredis";

import type { PubSubEvents } from "../../common/events.ts";

export function createEventsPubSub(publishClient: Redis, subscribeClient: Redis) {
  return createPubSub<PubSubEvents>({ eventTarget: createRedisEventTarget({ publishClient, subscribeClient }) });
}

export type PubSub = ReturnType<typeof createEventsPubSub>;
