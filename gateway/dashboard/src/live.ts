// What the live panels show, derived from the processingEvents subscription.
// Mutated in place and rendered at a fixed pace: at thousands of events per
// second a state update per event would spend the page on re-rendering.
import type { ProcessingEvent, ProcessingStatus, System } from "./operations.ts";

export const COUNTED = [
  "SUCCEEDED",
  "RETRY_SCHEDULED",
  "DEAD_LETTERED",
  "REJECTED",
] as const satisfies readonly ProcessingStatus[];
export type Counted = (typeof COUNTED)[number];

/** REJECTED messages that could not be read have no system. */
export type SystemKey = System | "UNREADABLE";

export const BUCKET_MS = 5_000;
export const WINDOW_BUCKETS = 60;
export const MAX_EVENTS = 200;

/** An event with its arrival number, a stable key for rendering. */
export type LiveEvent = ProcessingEvent & { seq: number };

export interface LiveModel {
  counters: Record<SystemKey, Record<Counted, number>>;
  /** Newest first. */
  events: LiveEvent[];
  /** Attempts per time bucket (Date.now() / BUCKET_MS), per system. */
  buckets: Record<SystemKey, Map<number, number>>;
  received: number;
}

const zeroCounters = (): Record<Counted, number> => ({ SUCCEEDED: 0, RETRY_SCHEDULED: 0, DEAD_LETTERED: 0, REJECTED: 0 });

export function createLiveModel(): LiveModel {
  return {
    counters: { SYSTEM1: zeroCounters(), SYSTEM2: zeroCounters(), UNREADABLE: zeroCounters() },
    events: [],
    buckets: { SYSTEM1: new Map(), SYSTEM2: new Map(), UNREADABLE: new Map() },
    received: 0,
  };
}

function isCounted(status: ProcessingStatus): status is Counted {
  return (COUNTED as readonly string[]).includes(status);
}

/** Bucketed by arrival time, not the event's own `at`: the browser's clock may disagree with the consumer's. */
export function recordEvent(model: LiveModel, event: ProcessingEvent, now: number): void {
  const key: SystemKey = event.system ?? "UNREADABLE";
  if (isCounted(event.status)) model.counters[key][event.status] += 1;
  model.events.unshift({ ...event, seq: model.received });
  if (model.events.length > MAX_EVENTS) model.events.length = MAX_EVENTS;
  const bucket = Math.floor(now / BUCKET_MS);
  const buckets = model.buckets[key];
  buckets.set(bucket, (buckets.get(bucket) ?? 0) + 1);
  if (buckets.size > WINDOW_BUCKETS + 1) for (const b of buckets.keys()) if (b <= bucket - WINDOW_BUCKETS) buckets.delete(b);
  model.received += 1;
}

/** Attempts per second over the window, oldest bucket first; the current bucket is partial and left out. */
export function throughput(model: LiveModel, key: SystemKey, now: number): number[] {
  const current = Math.floor(now / BUCKET_MS);
  const buckets = model.buckets[key];
  return Array.from({ length: WINDOW_BUCKETS }, (_, i) => (buckets.get(current - WINDOW_BUCKETS + i) ?? 0) / (BUCKET_MS / 1000));
}
