// The Yoga plugins of the gateway, in the order they apply.
import { useCSRFPrevention } from "@graphql-yoga/plugin-csrf-prevention";
import { usePrometheus } from "@graphql-yoga/plugin-prometheus";
import type { Plugin, YogaServerOptions } from "graphql-yoga";

import { useAuth } from "./auth.ts";
import type { Context, Deps } from "./context.ts";
import { useCostLimits } from "./cost-limits.ts";
import { type ShutdownState, useShutdownTracking } from "./drain.ts";
import { useGraphiQLPolicy } from "./graphiql.ts";
import { graphqlMetrics } from "./graphql-metrics.ts";
import { depthLimitRule } from "./limits.ts";
import { useClientLimits } from "./rate-limits.ts";

type Plugins = NonNullable<YogaServerOptions<Record<string, never>, Context>["plugins"]>;

export function gatewayPlugins(deps: Deps, shutdown: ShutdownState): Plugins {
  const { config } = deps;
  return [
    // A request a browser may send cross-site without a preflight (GET, form or text/plain
    // bodies) must carry x-graphql-yoga-csrf; JSON POSTs are always preflighted.
    useCSRFPrevention({ requestHeaders: ["x-graphql-yoga-csrf"] }),
    // Labels a client cannot multiply, and only the request's count, duration and errors
    // (graphql-metrics.ts); tracing times the phases when it is on.
    usePrometheus({ endpoint: "/metrics", registry: deps.metrics.registry, metrics: graphqlMetrics(deps.metrics.registry) }),
    useGraphiQLPolicy(),
    useCostLimits(config),
    useAuth(deps),
    ...useClientLimits(config),
    {
      onValidate({ addValidationRule }) {
        addValidationRule(depthLimitRule(config.gateway.maxDepth));
      },
    } satisfies Plugin<Context>,
    useShutdownTracking(shutdown),
  ];
}
