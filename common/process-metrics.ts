// The Node.js process metrics both processes export (prom-client's defaults), under their prefix.
import { collectDefaultMetrics, type Registry } from "prom-client";

/**
 * The event-loop delay histogram's timer, in ms. prom-client's default of 10 wakes an idle
 * process 100 times a second, which cost each process about 9 ms of CPU per second here
 * (tests/idle-wakes.test.ts, BENCHMARKS.md). At 50 a stall of 50 ms or more still shows in
 * `nodejs_eventloop_lag_*_seconds`, to within 50 ms.
 */
export const LOOP_DELAY_RESOLUTION_MS = 50;

export function collectProcessMetrics(registry: Registry, prefix: string): void {
  collectDefaultMetrics({ register: registry, prefix, eventLoopMonitoringPrecision: LOOP_DELAY_RESOLUTION_MS });
}
