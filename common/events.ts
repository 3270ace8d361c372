// Processing events go out on one Redis channel; every gateway subscribes to it
// through graphql-yoga's Redis event target, so all instances see all events.
import type { Config } from "./config.ts";
import type { ProcessingStatus, System } from "./contract.ts";

export interface ProcessingEvent {
  messageId: string;
  system: System | null;
  orderId: number | null;
  attempt: number;
  round: number;
  status: ProcessingStatus;
  at: string;
  error?: string;
}

/** The pub/sub topic (and Redis channel) of processing events. */
export function eventsTopic(config: Config): string {
  return `${config.redis.prefix}:processing-events`;
}

/** The typed event map carried by the gateway's pub/sub. */
export type PubSubEvents = Record<string, [ProcessingEvent]>;
