// Rate and concurrency per client for the operations that cost the stores the most:
// pipelineStats, deadLetters and deadLetterGroups (GATEWAY_RATE_LIMIT_READS per window),
// redriveDeadLetters, discardDeadLetters, restoreDeadLetterGroups and seedOrders
// (GATEWAY_RATE_LIMIT_WRITES per window), and at most GATEWAY_CLIENT_CONCURRENCY of those
// operations executing at once for one client; at most GATEWAY_CLIENT_SUBSCRIPTIONS live
// event subscriptions per client (each costs the gateway an execution per event) and
// GATEWAY_MAX_SUBSCRIPTIONS in all (each holds about 17 KB of heap, and up to
// GATEWAY_SUBSCRIPTION_BUFFER events for a subscriber that falls behind: 4,000 ran the gateway's
// 128 MB heap out).
// A client is the gateway token when it sent the right one, else its address.
import type { IncomingMessage } from "node:http";

import { isAsyncIterable } from "@envelop/core";
import { useRateLimiter } from "@envelop/rate-limiter";
import { type DocumentNode, GraphQLError, visit } from "graphql";
import type { Plugin } from "graphql-yoga";

import type { Config } from "../../common/config.ts";
import type { Context } from "./context.ts";

export const EXPENSIVE_READS = ["pipelineStats", "deadLetters", "deadLetterGroups"] as const;
export const EXPENSIVE_WRITES = ["redriveDeadLetters", "discardDeadLetters", "restoreDeadLetterGroups", "seedOrders"] as const;
const EXPENSIVE = new Set<string>([...EXPENSIVE_READS, ...EXPENSIVE_WRITES]);

/** Who is asking: the token's holders share one allowance, every other address has its own. */
export function clientKey(context: unknown): string {
  const ctx = context as Partial<Context> & { req?: IncomingMessage };
  if (ctx.authenticated && ctx.config?.gateway.token) return "token";
  return `address:${ctx.req?.socket?.remoteAddress ?? "unknown"}`;
}

const rateLimited = (message: string, extra: Record<string, unknown>) =>
  new GraphQLError(message, { extensions: { code: "RATE_LIMITED", ...extra, http: { status: 429 } } });

const mentions = new WeakMap<DocumentNode, boolean>();

/** Whether any field of the document, in any fragment and at any depth, has a rate-limited name. */
function mentionsExpensive(document: DocumentNode): boolean {
  let found = mentions.get(document);
  if (found === undefined) {
    found = false;
    visit(document, {
      Field(node) {
        if (EXPENSIVE.has(node.name.value)) found = true;
      },
    });
    mentions.set(document, found);
  }
  return found;
}

export function useClientLimits(config: Config): Plugin<Context>[] {
  const { rateLimitWindowMs, rateLimitReads, rateLimitWrites, clientConcurrency, clientSubscriptions, maxSubscriptions } =
    config.gateway;
  const window = `${rateLimitWindowMs}ms`;
  const message = "too many requests for {{id}}: try again later";
  const rate = useRateLimiter({
    identifyFn: clientKey,
    configByField: [
      ...EXPENSIVE_READS.map((field) => ({ type: "Query", field, max: rateLimitReads, window, message })),
      ...EXPENSIVE_WRITES.map((field) => ({ type: "Mutation", field, max: rateLimitWrites, window, message })),
    ],
    transformError: (text) => rateLimited(text, { windowMs: rateLimitWindowMs }),
  }) as Plugin<Context>;
  // The rate limiter walks every document with the schema's type information to find its
  // fields; a document that names none of them (kept per document: Yoga's parse cache hands
  // back the same one) cannot match, and skipping the walk saves about 3% of a messageHistory lookup's CPU.
  const rateOnExecute = rate.onExecute;
  if (rateOnExecute)
    rate.onExecute = (payload) => (mentionsExpensive(payload.args.document) ? rateOnExecute(payload) : undefined);

  const executing = perClient(clientConcurrency);
  const concurrency: Plugin<Context> = {
    onExecute({ args, executeFn, setExecuteFn }) {
      // Any mention counts, through a fragment too: a document is expensive if it could be.
      if (!mentionsExpensive(args.document)) return;
      const key = clientKey(args.contextValue);
      setExecuteFn(async (a) => {
        if (!executing.take(key)) {
          return {
            errors: [
              rateLimited(`at most ${clientConcurrency} expensive operations at once per client: try again when one finishes`, {
                concurrency: clientConcurrency,
              }),
            ],
          };
        }
        try {
          return await executeFn(a);
        } finally {
          executing.release(key);
        }
      });
    },
  };

  const subscribed = perClient(clientSubscriptions);
  let allSubscribed = 0;
  const subscriptions: Plugin<Context> = {
    onSubscribe({ args, setResultAndStopExecution }) {
      const key = clientKey(args.contextValue);
      if (allSubscribed >= maxSubscriptions) {
        const message = `the gateway holds its maximum of ${maxSubscriptions} subscriptions: try again later`;
        setResultAndStopExecution({ errors: [rateLimited(message, { subscriptions: maxSubscriptions, limit: "total" })] });
        return;
      }
      if (!subscribed.take(key)) {
        const message = `at most ${clientSubscriptions} subscriptions at once per client: end one first`;
        setResultAndStopExecution({ errors: [rateLimited(message, { subscriptions: clientSubscriptions, limit: "client" })] });
        return;
      }
      allSubscribed++;
      let held = true;
      const release = () => {
        if (held) {
          subscribed.release(key);
          allSubscribed--;
        }
        held = false;
      };
      return {
        // A stream holds its place until it ends; a refusal or an error (no stream) gives it back at once.
        onSubscribeResult: ({ result }) => (isAsyncIterable(result) ? { onEnd: release } : release()),
        onSubscribeError: release,
      };
    },
  };
  return [rate, concurrency, subscriptions];
}

/** How many of something each client holds, at most `max`. */
export function perClient(max: number) {
  const held = new Map<string, number>();
  return {
    take(key: string): boolean {
      const n = held.get(key) ?? 0;
      if (n >= max) return false;
      held.set(key, n + 1);
      return true;
    },
    release(key: string) {
      const left = (held.get(key) ?? 1) - 1;
      if (left > 0) held.set(key, left);
      else held.delete(key);
    },
  };
}
