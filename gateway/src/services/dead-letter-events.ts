// What a redrive or a discard tells the dashboards: one processing event on the events topic
// and one tick of its outcome counter, sent together in one pipeline.
import type { Redis } from "ioredis";

import type { Config } from "../../../common/config.ts";
import { eventsTopic, type ProcessingEvent } from "../../../common/events.ts";
import { counterField, counterKey } from "../../../common/keys.ts";

/** Publishes the event and counts its outcome under its system. */
export async function emitProcessingEvent(redis: Redis, config: Config, event: ProcessingEvent): Promise<void> {
  await redis
    .pipeline()
    .publish(eventsTopic(config), JSON.stringify(event))
    .hincrby(counterKey(config), counterField(event.system, event.status), 1)
    .exec();
}
