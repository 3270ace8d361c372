// The gateway: GraphQL over HTTP (GraphiQL at /graphql), SSE and WebSocket
// subscriptions, health endpoints. Takes every client from main() and wires the plugins
// (plugins.ts), the HTTP routes (http-routes.ts), the WebSocket server (ws-subscriptions.ts)
// and the drain on shutdown (drain.ts).
import http from "node:http";
import type { Duplex } from "node:stream";

import { createYoga } from "graphql-yoga";

import type { Check } from "../../common/http-health.ts";
import { tokenMatches } from "./auth.ts";
import { limitConnections, slowClientTimeouts, tooManyConnections } from "./connection-limits.ts";
import type { Context, Deps } from "./context.ts";
import { createDashboardHandler } from "./dashboard.ts";
import { createShutdownState, drainAndClose } from "./drain.ts";
import { createGraphiQLAssetsHandler, graphiqlOptions, renderGraphiQL } from "./graphiql.ts";
import { createRequestHandler } from "./http-routes.ts";
import { makeLoaders } from "./loaders.ts";
import { createLogScans } from "./log-scans.ts";
import { createMaskError } from "./mask-error.ts";
import { boundedParserCache } from "./parse-cache.ts";
import { gatewayPlugins } from "./plugins.ts";
import { readinessChecks } from "./readiness.ts";
import { createRequestBudget } from "./request-budget.ts";
import { schema } from "./schema/index.ts";
import { serveWebSockets } from "./ws-subscriptions.ts";

export interface Gateway {
  yoga: ReturnType<typeof createYoga<Record<string, never>, Context>>;
  server: http.Server;
  /**
   * Shuts the servers down in order: stops accepting connections and reports not ready, lets the
   * requests and operations in flight finish (for at most `drainMs`, GATEWAY_DRAIN_TIMEOUT_MS by
   * default), completes the subscriptions, then closes every connection. Leaves the clients it
   * was given open: they are closed after it by whoever opened them.
   */
  close(drainMs?: number): Promise<void>;
}

export function createGateway(deps: Deps, extraChecks: Check[] = []): Gateway {
  const { config, logger } = deps;
  const shutdown = createShutdownState();
  const logScans = createLogScans(config.gateway.logScans);

  const yoga = createYoga<Record<string, never>, Context>({
    schema,
    graphqlEndpoint: "/graphql",
    landingPage: false,
    graphiql: graphiqlOptions(config),
    renderGraphiQL,
    logging: false,
    parserAndValidationCache: boundedParserCache(),
    maskedErrors: { maskError: createMaskError(logger) },
    context: ({ request }) => {
      const budget = createRequestBudget({
        concurrency: config.gateway.requestConcurrency,
        timeoutMs: config.gateway.requestTimeoutMs,
      });
      return {
        ...deps,
        request,
        authenticated: config.gateway.token ? tokenMatches(config.gateway.token, request.headers.get("authorization")) : true,
        budget,
        logScans,
        loaders: makeLoaders(deps, budget),
      };
    },
    plugins: gatewayPlugins(deps, shutdown),
  });

  const server = http.createServer(slowClientTimeouts(config.gateway.headersTimeoutMs));
  const limits = { total: config.gateway.maxConnections, perClient: config.gateway.clientConnections };
  const connections = limitConnections(server, limits, (limit) => deps.metrics.connectionsRefused.inc({ limit }));
  const refusal = (socket: Duplex) => {
    const limit = connections.refusal(socket);
    return limit && tooManyConnections(limit, limits);
  };
  server.on(
    "request",
    createRequestHandler({
      shutdown,
      checks: readinessChecks(deps, extraChecks),
      statics: [createDashboardHandler({}), createGraphiQLAssetsHandler()],
      yoga,
      maxBodyBytes: config.gateway.maxBodyBytes,
      refusal,
    }),
  );
  const ws = serveWebSockets(server, yoga, {
    maxPayload: config.gateway.maxBodyBytes,
    maxOperations: config.gateway.connectionOperations,
    refusal,
  });

  let closed: Promise<void> | undefined;
  return {
    yoga,
    server,
    close(drainMs = config.gateway.drainTimeoutMs) {
      closed ??= drainAndClose(shutdown, { server, yoga, ...ws }, logger, drainMs);
      return closed;
    },
  };
}
