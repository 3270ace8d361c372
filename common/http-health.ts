// A tiny HTTP server for a process without its own: /healthz, /readyz and /metrics.
import http from "node:http";

import type { Registry } from "prom-client";

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

export function createHealthServer(opts: { checks: Check[]; registry: Registry }): http.Server {
  return http.createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    const send = (status: number, body: string, type = "application/json") => {
      res.writeHead(status, { "content-type": type });
      res.end(body);
    };
    if (path === "/healthz") return send(200, JSON.stringify({ status: "ok" }));
    if (path === "/readyz") {
      void runChecks(opts.checks).then((r) => send(r.ready ? 200 : 503, JSON.stringify(r)));
      return;
    }
    if (path === "/metrics") {
      void opts.registry.metrics().then((m) => send(200, m, opts.registry.contentType));
      return;
    }
    send(404, JSON.stringify({ error: "not found" }));
  });
}
