// Toxiproxy between our processes and a store: a TCP proxy per link whose
// faults (latency, resets, a link that is down) are set through its HTTP API.
// The server is built from the Go module proxy on first use (scripts/services.sh).
import { type ChildProcess, spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";

import { LOG_DIR, toxiproxyBinary } from "./fault-services.ts";
import { freePort, PID_DIR } from "./processes.ts";

export interface Toxic {
  type: "latency" | "reset_peer" | "timeout" | "limit_data" | "bandwidth" | "slow_close" | "slicer";
  stream?: "upstream" | "downstream";
  toxicity?: number;
  attributes: Record<string, number>;
}

export interface Link {
  name: string;
  /** host:port the process connects to instead of the store. */
  listen: string;
  port: number;
  /** Down: the proxy stops listening and closes every connection through it. */
  setEnabled(enabled: boolean): Promise<void>;
  addToxic(name: string, toxic: Toxic): Promise<void>;
  removeToxic(name: string): Promise<void>;
}

export interface Toxiproxy {
  link(name: string, upstream: string): Promise<Link>;
  stop(): Promise<void>;
}

export async function startToxiproxy(): Promise<Toxiproxy> {
  const bin = await toxiproxyBinary();
  const port = await freePort();
  const api = `http://127.0.0.1:${port}`;
  fs.mkdirSync(LOG_DIR, { recursive: true });
  const out = fs.openSync(path.join(LOG_DIR, "toxiproxy.log"), "a");
  const child: ChildProcess = spawn(bin, ["-host", "127.0.0.1", "-port", String(port)], { stdio: ["ignore", out, out] });
  fs.closeSync(out);
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  // The suite's leftover killer ends it if this run is interrupted.
  fs.mkdirSync(PID_DIR, { recursive: true });
  fs.writeFileSync(path.join(PID_DIR, String(child.pid)), "toxiproxy");
  const killOnExit = () => child.kill("SIGKILL");
  process.once("exit", killOnExit);

  async function call(method: string, route: string, body?: unknown): Promise<unknown> {
    const res = await fetch(`${api}${route}`, {
      method,
      headers: { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(5000),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`toxiproxy ${method} ${route}: ${res.status} ${text}`);
    // Most answers are JSON; /version is plain text.
    return res.headers.get("content-type")?.includes("json") ? JSON.parse(text) : text;
  }

  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      await call("GET", "/version");
      break;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`toxiproxy did not answer on ${api}`, { cause: err });
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  return {
    async link(name, upstream) {
      const listenPort = await freePort();
      const listen = `127.0.0.1:${listenPort}`;
      await call("POST", "/proxies", { name, listen, upstream, enabled: true });
      return {
        name,
        listen,
        port: listenPort,
        setEnabled: async (enabled) => void (await call("POST", `/proxies/${name}`, { enabled })),
        addToxic: async (toxicName, t) =>
          void (await call("POST", `/proxies/${name}/toxics`, {
            name: toxicName,
            type: t.type,
            stream: t.stream ?? "downstream",
            toxicity: t.toxicity ?? 1,
            attributes: t.attributes,
          })),
        removeToxic: async (toxicName) => void (await call("DELETE", `/proxies/${name}/toxics/${toxicName}`)),
      };
    },
    async stop() {
      process.off("exit", killOnExit);
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(timer);
      fs.rmSync(path.join(PID_DIR, String(child.pid)), { force: true });
    },
  };
}
