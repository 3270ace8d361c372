// GraphiQL at /graphql, served entirely by the gateway: the page Yoga renders names only
// same-origin assets under /graphiql/ (GraphiQL's bundle, stylesheet, Monaco workers, favicon,
// all from @graphql-yoga/render-graphiql), and its Content-Security-Policy refuses anything else.
import { createHash } from "node:crypto";
import type http from "node:http";
import { createRequire } from "node:module";
import { promisify } from "node:util";
import { Worker } from "node:worker_threads";
import { gzip } from "node:zlib";

import type { GraphiQLOptions, Plugin } from "graphql-yoga";

import type { Config } from "../../common/config.ts";

export const GRAPHIQL_ASSETS_PATH = "/graphiql/";

/**
 * The README's API tour as named operations: GraphiQL's run button offers each by name.
 * README.md shows the same lines (a test keeps the two equal).
 */
export const API_TOUR = `mutation SeedOrders { seedOrders(system: SYSTEM1, count: 1000, securityCheckRatio: 0.5) { inserted firstId lastId securityCheckTrue } }
mutation PublishPending { publishPending(system: SYSTEM1) { published fromId toId cursor waitingOnTransactions } }
query Cursors { cursors { system lastPublishedId pending } }
query PipelineStats { pipelineStats { queues { name messages consumers } systems { system sourceRows published succeeded deadLettered inFlight endputRows } } }
query DeadLetteredMessages { messages(system: SYSTEM1, status: DEAD_LETTERED, first: 10) { edges { node { messageId orderId attempt error } } } }
query MessageHistory { messageHistory(messageId: "…") { round attempt status error processedAt durationMs consumerId } }
query Orders { orders(system: SYSTEM1, first: 20) { totalCount edges { node { id securityCheck history { attempt status } } } } }
query EndputOrders { endputOrders(system: SYSTEM1, first: 20) { totalCount edges { node { sourceOrderId attempts } } } }
query DeadLetters { deadLetters(first: 20) { messageId system orderId reason attempts } }
query DeadLetterGroups { deadLetterGroups { system reason count oldestDeadAt newestDeadAt sampleMessageId } }
mutation RedriveDryRun { redriveDeadLetters(system: SYSTEM1, reason: "max-attempts", dryRun: true) { matched moved alreadyRedriven dryRun } }
mutation DiscardDryRun { discardDeadLetters(system: SYSTEM1, reason: "max-attempts", dryRun: true) { matched discarded dryRun letters { messageId orderId group } } }
subscription ProcessingEvents { processingEvents(system: SYSTEM1) { messageId orderId attempt status at } }
`;

function defaultQuery(tokenRequired: boolean): string {
  const lines = [
    "# tentativa's API tour. To run one operation, put",
    "# the cursor in it and press Ctrl-Enter, or pick it",
    "# by name from the run button. ProcessingEvents",
    "# streams over WebSocket until stopped; MessageHistory",
    "# wants a messageId from DeadLetteredMessages.",
  ];
  if (tokenRequired) lines.push("#", "# Mutations need this gateway's token: replace", "# <token> in the Headers tab below.");
  return `${lines.join("\n")}\n\n${API_TOUR}`;
}

/** GraphiQL's options: the tour in the first tab, and where the token goes when one is configured. */
export function graphiqlOptions(config: Config): GraphiQLOptions {
  const token = config.gateway.token;
  return {
    title: "tentativa",
    subscriptionsProtocol: "WS",
    defaultQuery: defaultQuery(Boolean(token)),
    // A placeholder, never the token itself: the page is readable by anyone who can reach it.
    ...(token
      ? { headers: JSON.stringify({ Authorization: "Bearer <token>" }, null, 2), defaultEditorToolsVisibility: "headers" }
      : {}),
  };
}

// Monaco wraps every worker in a blob: that imports the worker script, hence worker-src blob:.
// Monaco and React set inline styles; nothing else may come from anywhere but this origin.
export const GRAPHIQL_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "font-src 'self' data:",
  "worker-src 'self' blob:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

interface Asset {
  body: Buffer;
  type: string;
  etag: string;
  gzipped?: Promise<Buffer>;
}

interface Assets {
  byName: Map<string, Asset>;
  /** Asset URLs by role, for the page. */
  urls: { css: string; js: string; boot: string; favicon: string; workers: Record<string, string> };
}

// Runs before GraphiQL's bundle (Monaco reads MonacoEnvironment when it starts a worker) and
// renders once the document is parsed; its settings come from a JSON block, not inline script.
const BOOT = `"use strict";
(() => {
  const config = JSON.parse(document.getElementById("graphiql-config").textContent);
  const workers = {};
  for (const [label, path] of Object.entries(config.workers)) workers[label] = new URL(path, location.href).href;
  self.MonacoEnvironment = { globalAPI: false, getWorkerUrl: (_moduleId, label) => workers[label] };
  addEventListener("DOMContentLoaded", () => {
    YogaGraphiQL.renderYogaGraphiQL(document.getElementById("root"), config.options);
  });
})();
`;

const gzipAsync = promisify(gzip);
let loading: Promise<Assets> | undefined;

type Bundle = Record<"css" | "js" | "favicon" | "editorWorkerService" | "jsonWorker" | "graphqlWorker", Buffer>;

// The bundle is a module of string constants, about 9 MB. Imported here, it would stay in the
// gateway's heap for good, with its source text beside it (several times that under tsx): a
// short-lived worker imports it and hands back the bytes alone.
const BUNDLE_READER = `
const { parentPort, workerData } = require("node:worker_threads");
const bundle = require(workerData.file);
const bytes = {};
for (const name of workerData.names) bytes[name] = new TextEncoder().encode(bundle[name]);
parentPort.postMessage(bytes, Object.values(bytes).map((b) => b.buffer));
`;

function readBundle(): Promise<Bundle> {
  const file = createRequire(import.meta.url).resolve("@graphql-yoga/render-graphiql/graphiql");
  const names = ["css", "js", "favicon", "editorWorkerService", "jsonWorker", "graphqlWorker"];
  return new Promise((resolve, reject) => {
    const worker = new Worker(BUNDLE_READER, { eval: true, execArgv: [], workerData: { file, names } });
    worker.once("message", (bytes: Record<string, Uint8Array>) => {
      const bundle = Object.fromEntries(
        Object.entries(bytes).map(([k, b]) => [k, Buffer.from(b.buffer, b.byteOffset, b.byteLength)]),
      );
      resolve(bundle as Bundle);
    });
    worker.once("error", reject);
    worker.once("exit", (code) => reject(new Error(`GraphiQL's bundle reader exited with code ${code}`)));
  });
}

/** Loaded on first use: a gateway nobody opens GraphiQL on never reads the bundle. */
function loadAssets(): Promise<Assets> {
  loading ??= readBundle().then((m) => {
    const byName = new Map<string, Asset>();
    const add = (stem: string, ext: string, type: string, body: Buffer): string => {
      const hash = createHash("sha256").update(body).digest("hex");
      const name = `${stem}.${hash.slice(0, 12)}.${ext}`;
      byName.set(name, { body, type, etag: `"${hash.slice(0, 32)}"` });
      return `${GRAPHIQL_ASSETS_PATH}${name}`;
    };
    const js = "text/javascript; charset=utf-8";
    const icon = /^data:([^;,]+);base64,(.*)$/s.exec(m.favicon.toString());
    return {
      byName,
      urls: {
        css: add("graphiql", "css", "text/css; charset=utf-8", m.css),
        js: add("graphiql", "js", js, m.js),
        boot: add("boot", "js", js, Buffer.from(BOOT)),
        favicon: icon
          ? add("favicon", "ico", icon[1]!, Buffer.from(icon[2]!, "base64"))
          : add("favicon", "svg", "image/svg+xml", Buffer.from(FALLBACK_ICON)),
        workers: {
          editorWorkerService: add("editor.worker", "js", js, m.editorWorkerService),
          json: add("json.worker", "js", js, m.jsonWorker),
          graphql: add("graphql.worker", "js", js, m.graphqlWorker),
        },
      },
    };
  });
  // A failed read is tried again by the next request rather than remembered.
  loading.catch(() => (loading = undefined));
  return loading;
}

const FALLBACK_ICON = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><circle cx="8" cy="8" r="7" fill="#e535ab"/></svg>`;

const escapeHtml = (s: string) =>
  s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);

/** Yoga's `renderGraphiQL`: a page that names only this gateway's own assets. */
export async function renderGraphiQL(options: GraphiQLOptions): Promise<string> {
  const { urls } = await loadAssets();
  // `<` escaped: the JSON sits inside a script element and must not be able to close it.
  const config = JSON.stringify({ options, workers: urls.workers }).replace(/</g, "\\u003c");
  return `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <title>${escapeHtml(options.title ?? "GraphiQL")}</title>
    <link rel="icon" href="${urls.favicon}" />
    <link rel="stylesheet" href="${urls.css}" />
    <script type="application/json" id="graphiql-config">${config}</script>
    <script src="${urls.boot}"></script>
    <script src="${urls.js}"></script>
  </head>
  <body class="no-focus-outline">
    <noscript>GraphiQL needs JavaScript.</noscript>
    <div id="root"></div>
  </body>
</html>
`;
}

/** Puts the policy on the page Yoga renders at the GraphQL endpoint (its only HTML answer). */
export function useGraphiQLPolicy(): Plugin {
  return {
    onResponse({ response }) {
      if (!response.headers.get("content-type")?.startsWith("text/html")) return;
      response.headers.set("content-security-policy", GRAPHIQL_CSP);
      response.headers.set("referrer-policy", "no-referrer");
      response.headers.set("x-content-type-options", "nosniff");
      response.headers.set("cache-control", "no-cache");
    },
  };
}

/**
 * A header GraphiQL sends with an operation over WebSocket: its Headers tab travels in the
 * operation's `extensions.headers`, never in the connection parameters.
 */
export function headerFromExtensions(extensions: Record<string, unknown> | null | undefined, name: string): string | undefined {
  const headers = extensions?.headers;
  if (!headers || typeof headers !== "object") return undefined;
  const entry = Object.entries(headers).find(([k]) => k.toLowerCase() === name);
  return typeof entry?.[1] === "string" ? entry[1] : undefined;
}

export type GraphiQLAssetsHandler = (req: http.IncomingMessage, res: http.ServerResponse) => boolean;

/**
 * Answers GET and HEAD under /graphiql/ with the assets the page names, cached for good (their
 * names carry their hash), gzipped when the client accepts it; declines every other path.
 */
export function createGraphiQLAssetsHandler(): GraphiQLAssetsHandler {
  return (req, res) => {
    const pathname = (req.url ?? "/").split("?")[0]!;
    if (!pathname.startsWith(GRAPHIQL_ASSETS_PATH)) return false;
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain; charset=utf-8" }).end("method not allowed\n");
      return true;
    }
    void serveAsset(req, res, pathname.slice(GRAPHIQL_ASSETS_PATH.length)).catch(() => {
      if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain; charset=utf-8" });
      res.end("could not load GraphiQL's assets\n");
    });
    return true;
  };
}

async function serveAsset(req: http.IncomingMessage, res: http.ServerResponse, name: string): Promise<void> {
  const asset = (await loadAssets()).byName.get(name);
  if (!asset) {
    res.writeHead(404, { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" }).end("not found\n");
    return;
  }
  const headers: Record<string, string> = {
    "content-type": asset.type,
    "cache-control": "public, max-age=31536000, immutable",
    etag: asset.etag,
    vary: "accept-encoding",
    "x-content-type-options": "nosniff",
  };
  if (req.headers["if-none-match"] === asset.etag) {
    res.writeHead(304, headers).end();
    return;
  }
  let body = asset.body;
  if (/\bgzip\b/.test(req.headers["accept-encoding"] ?? "") && body.length > 1024) {
    asset.gzipped ??= gzipAsync(body);
    body = await asset.gzipped;
    headers["content-encoding"] = "gzip";
  }
  res.writeHead(200, { ...headers, "content-length": String(body.length) });
  res.end(req.method === "HEAD" ? undefined : body);
}
