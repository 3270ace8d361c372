// The GraphQL metrics of Yoga's Prometheus plugin, labelled only with values a client cannot
// multiply. The plugin's own labels include the request's URL (a series per query string), the
// path of each error (made of the client's aliases) and any operation name a client makes up; a
// series lives in the gateway's heap until the process exits, so distinct values alone ran a
// 128 MB heap out within 20,000 small GET requests. Here the labels are the operation type, the
// method, the status code and, for the first OPERATION_NAMES_KEPT names, the operation's name.
import { createCounter, createHistogram, type FillLabelsFnParams, type usePrometheus } from "@graphql-yoga/plugin-prometheus";
import type { Registry } from "prom-client";

/** Operation names that get series of their own; later names are counted under OTHER_OPERATIONS. */
export const OPERATION_NAMES_KEPT = 100;
export const OTHER_OPERATIONS = "(other)";
/** A longer name is counted under OTHER_OPERATIONS (GraphQL sets no limit on a name's length). */
const MAX_NAME_LENGTH = 100;

/** The operationName label: the name itself while fewer than `limit` names were seen since start. */
export function operationNameLabel(limit = OPERATION_NAMES_KEPT): (name: string | undefined) => string {
  const kept = new Set<string>();
  return (name) => {
    if (!name) return "Anonymous";
    if (kept.has(name)) return name;
    if (kept.size >= limit || name.length > MAX_NAME_LENGTH) return OTHER_OPERATIONS;
    kept.add(name);
    return name;
  };
}

type Metrics = Parameters<typeof usePrometheus>[0]["metrics"];

/**
 * The `metrics` option of usePrometheus: the request count, duration and errors and the HTTP
 * duration with bounded labels. The per-phase histograms and the request summary are off (about
 * a fifth of a trivial request's CPU, BENCHMARKS.md; tracing times the phases when it is on), and
 * so is the deprecated-field count: the schema deprecates nothing, and counting walks every
 * request's document with the schema's type information.
 */
export function graphqlMetrics(registry: Registry): Metrics {
  const nameOf = operationNameLabel();
  const operation = (p: FillLabelsFnParams) => ({
    operationName: nameOf(p.operationName),
    operationType: p.operationType ?? "unknown",
  });
  const OPERATION = ["operationType", "operationName"] as const;
  return {
    graphql_envelop_deprecated_field: false,
    graphql_envelop_phase_parse: false,
    graphql_envelop_phase_validate: false,
    graphql_envelop_phase_context: false,
    graphql_envelop_phase_execute: false,
    graphql_envelop_phase_subscribe: false,
    graphql_envelop_request_time_summary: false,
    graphql_envelop_request: createCounter({
      registry,
      counter: { name: "graphql_envelop_request", help: "GraphQL operations executed", labelNames: OPERATION },
      fillLabelsFn: operation,
    }),
    graphql_envelop_request_duration: createHistogram({
      registry,
      histogram: {
        name: "graphql_envelop_request_duration",
        help: "Time spent on a GraphQL operation from parse to execute",
        labelNames: OPERATION,
      },
      fillLabelsFn: operation,
    }),
    graphql_envelop_error_result: createCounter({
      registry,
      counter: {
        name: "graphql_envelop_error_result",
        help: "Errors reported by GraphQL operations, by the phase that raised them",
        labelNames: [...OPERATION, "phase"],
      },
      fillLabelsFn: (p) => ({ ...operation(p), phase: p.errorPhase ?? "unknown" }),
    }),
    graphql_yoga_http_duration: createHistogram({
      registry,
      histogram: {
        name: "graphql_yoga_http_duration",
        help: "Time spent on a GraphQL HTTP request",
        labelNames: [...OPERATION, "method", "statusCode"],
      },
      fillLabelsFn: (p: FillLabelsFnParams & { request: Request; response: Response }) => ({
        ...operation(p),
        method: p.request.method,
        statusCode: p.response.status,
      }),
    }),
  };
}
