// Processing events from Redis to each subscriber, through a bounded queue per subscriber.
// Events arrive at the pipeline's rate, whatever a subscriber reads: a client that stops reading,
// or more subscribers than a loaded gateway can serve, fall behind. graphql-yoga's pubsub queued
// for them until 1,024 events were waiting and then threw from the Redis client's message
// handler, which took the whole gateway down. Here a subscriber that falls `buffer` events behind
// loses its queue at once and gets FELL_BEHIND as its last item (the resolver answers it with
// SUBSCRIBER_TOO_SLOW); every other subscriber carries on. Events are parsed once and shared, so
// a queue holds references only.
import { createRedisEventTarget } from "@graphql-yoga/redis-event-target";
import type { Redis } from "ioredis";

/** The last item of a stream whose subscriber fell too far behind. */
export const FELL_BEHIND = Symbol("fell behind");

export type EventStream<T> = AsyncIterableIterator<T | typeof FELL_BEHIND>;

export function createEventsPubSub(publishClient: Redis, subscribeClient: Redis, buffer: number) {
  const target = createRedisEventTarget({ publishClient, subscribeClient });
  return {
    /** The events on `topic` that `keep` accepts, for as long as the subscriber keeps up. */
    subscribe<T>(topic: string, keep: (event: T) => boolean = () => true): EventStream<T> {
      return boundedStream<T>((push) => {
        const listener = (event: Event) => {
          const value = (event as CustomEvent<T>).detail;
          if (keep(value)) push(value);
        };
        target.addEventListener(topic, listener);
        return () => target.removeEventListener(topic, listener);
      }, buffer);
    },
  };
}

export type PubSub = ReturnType<typeof createEventsPubSub>;

/**
 * An async iterator over what `listen` pushes, holding at most `buffer` items the reader has not
 * taken yet. Past that it stops listening, drops what it held, and yields FELL_BEHIND and ends.
 */
export function boundedStream<T>(listen: (push: (value: T) => void) => () => void, buffer: number): EventStream<T> {
  let queue: T[] = [];
  let head = 0;
  let state: "open" | "behind" | "done" = "open";
  let waiting: ((result: IteratorResult<T | typeof FELL_BEHIND>) => void) | undefined;
  const drop = () => {
    queue = [];
    head = 0;
  };
  const unlisten = listen((value) => {
    if (state !== "open") return;
    if (waiting) {
      const resolve = waiting;
      waiting = undefined;
      resolve({ value, done: false });
    } else if (queue.length - head >= buffer) {
      state = "behind";
      unlisten();
      drop();
    } else {
      queue.push(value);
    }
  });
  const end = (): IteratorResult<T | typeof FELL_BEHIND> => {
    if (state === "open") unlisten();
    state = "done";
    drop();
    const resolve = waiting;
    waiting = undefined;
    resolve?.({ value: undefined, done: true });
    return { value: undefined, done: true };
  };
  return {
    next() {
      if (head < queue.length) {
        const value = queue[head]!;
        head++;
        // Taken items go: all at once when the reader catches up, in halves while it trails.
        if (head === queue.length) drop();
        else if (head >= 1024 && head * 2 >= queue.length) {
          queue = queue.slice(head);
          head = 0;
        }
        return Promise.resolve({ value, done: false });
      }
      if (state === "behind") {
        state = "done";
        return Promise.resolve({ value: FELL_BEHIND, done: false });
      }
      if (state === "done") return Promise.resolve({ value: undefined, done: true });
      return new Promise((resolve) => (waiting = resolve));
    },
    return: () => Promise.resolve(end()),
    throw: (err: unknown) => {
      end();
      return Promise.reject(err);
    },
    [Symbol.asyncIterator]() {
      return this;
    },
  };
}
