// One HTTP request per connection, timed by the client: what scenario 6b sends the gateway.
import http from "node:http";
import { Readable } from "node:stream";

import { between, type ThreadTimes, threadTimes } from "../../support/scheduling.ts";
import type { HostileRequest } from "./hostile.ts";

export interface Answer {
  kind: string;
  status: number;
  /** The code of each GraphQL error in the answer. */
  codes: string[];
  ms: number;
  snippet: string;
}

/**
 * One request on its own connection (no keep-alive reuse races; from `localAddress` if given),
 * timed from the first byte sent to the last received.
 */
export function send(
  port: number,
  r: HostileRequest,
  { localAddress, timeoutMs = 30_000 }: { localAddress?: string; timeoutMs?: number } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const req = http.request(
      {
        host: "127.0.0.1",
        port,
        localAddress,
        method: r.method,
        path: r.path,
        headers: r.headers,
        agent: false,
        timeout: timeoutMs,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("error", reject);
        res.on("end", () => {
          const ms = performance.now() - t0;
          const text = Buffer.concat(chunks).toString("utf8");
          // One entry per GraphQL error, "" for an error without a code.
          let codes: string[] = [];
          try {
            const parsed = JSON.parse(text) as { errors?: { extensions?: { code?: string } }[] };
            if (Array.isArray(parsed.errors)) codes = parsed.errors.map((e) => String(e.extensions?.code ?? ""));
          } catch {
            // Not JSON: only a 4xx makes it a refusal.
          }
          resolve({ kind: r.kind, status: res.statusCode ?? 0, codes, ms, snippet: text.slice(0, 160) });
        });
      },
    );
    req.on("error", reject);
    req.on("timeout", () => req.destroy(new Error("timed out")));
    writeBody(req, r.body);
  });
}

/** An answer with what the gateway's main thread and the sender's did while it was out. */
export interface TimedAnswer extends Answer {
  gateway?: ThreadTimes;
  client?: ThreadTimes;
}

/** send(), reading the schedstat of the gateway (given its pid) and of this process around it. */
export async function sendTimed(
  port: number,
  r: HostileRequest,
  gatewayPid: number | undefined,
  opts?: Parameters<typeof send>[2],
): Promise<TimedAnswer> {
  const gatewayBefore = gatewayPid ? threadTimes(gatewayPid) : undefined;
  const clientBefore = threadTimes("self");
  const answer = await send(port, r, opts);
  return {
    ...answer,
    gateway: between(gatewayBefore, gatewayPid ? threadTimes(gatewayPid) : undefined),
    client: between(clientBefore, threadTimes("self")),
  };
}

/** Sends a HostileRequest's body on `req` and ends it. */
export function writeBody(req: http.ClientRequest, body: HostileRequest["body"]): void {
  if (typeof body === "function") Readable.fromWeb(body() as never).pipe(req);
  else if (typeof body === "string" || body === undefined) req.end(body);
  else {
    req.setHeader(
      "content-length",
      body.reduce((n, b) => n + b.length, 0),
    );
    for (const b of body) req.write(b);
    req.end();
  }
}
