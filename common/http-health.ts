// A tiny HTTP server for a process without its own: /healthz, /readyz and /metrics.
import http from "node:http";

import type { Registry } from "prom-client";

import { sharedResult } from "./cached-reading.ts";

export interface Check {
  name: string;
  check: () => Promise<unknown>;
}

/** Runs every dependency check with a timeout; ready when all pass. */
export async function runChecks(checks: Check[], timeoutMs = 2000) {
  const results = await Promise.all(
    checks.map(async ({ name, check }) => {
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          check(),
          new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms`)), timeoutMs))),
        ]);
        return { name, ok: true as const };
      } catch (err) {
        return { name, ok: false as const, error: err instanceof Error ? err.message : String(err) };
      } finally {
        clearTimeout(timer);
      }
    }),
  );
  return { ready: results.every((r) => r.ok), checks: results };
}

export type Readiness = Awaited<ReturnType<typeof runChecks>>;

/** How long one run of the checks answers readiness probes. */
export const READINESS_TTL_MS = 1_000;

/**
 * Readiness as probes get it: the last run of the checks while it is under `ttlMs` old, and one
 * run at a time however many probes ask. A run costs every store a round trip, so a run per probe
 * let a client flooding /readyz (1,048 a second against the gateway) slow every other request: a
 * normal query's median rose from 3.8 to 91 ms.
 */
export function sharedReadiness(checks: Check[], ttlMs = READINESS_TTL_MS): () => Promise<Readiness> {
  return sharedResult(() => runChecks(checks), ttlMs);
}

/**
 * Connections the health server holds at once; Node drops new ones past it. Probes and scrapes
 * need a few, and each idle connection costs about 5 KB of heap: 19,000 held from one client
 * took the consumer's heap to 100–150 MB.
 */
export const HEALTH_MAX_CONNECTIONS = 1_000;

export function createHealthServer(opts: { checks: Check[]; registry: Registry }): http.Server {
  const readiness = sharedReadiness(opts.checks);
  const server = http.createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    const send = (status: number, body: string, type = "application/json") => {
      res.writeHead(status, { "content-type": type });
      res.end(body);
    };
    if (path === "/healthz") return send(200, JSON.stringify({ status: "ok" }));
    if (path === "/readyz") {
      void readiness().then((r) => send(r.ready ? 200 : 503, JSON.stringify(r)));
      return;
    }
    if (path === "/metrics") {
      void opts.registry.metrics().then((m) => send(200, m, opts.registry.contentType));
      return;
    }
    send(404, JSON.stringify({ error: "not found" }));
  });
  server.maxConnections = HEALTH_MAX_CONNECTIONS;
  return server;
}
