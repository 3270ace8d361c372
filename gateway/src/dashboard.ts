// Serves the operator dashboard's built bundle (gateway/dashboard/dist): index.html
// at `/`, hashed assets under `/assets/`. Everything else falls through to the caller.
// The files themselves (lookup, ETag and 304, Last-Modified, HEAD) are served by sirv;
// this module owns the routes, the methods, the asset-path checks and the headers.
import type http from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { lookup } from "mrmime";
import sirv from "sirv";

export const DASHBOARD_BUILD_COMMAND = "npx vite build --config gateway/dashboard/vite.config.ts";

const DEFAULT_DIST = fileURLToPath(new URL("../dashboard/dist", import.meta.url));

// Vite names every emitted asset <name>-<8+ char hash>.<ext>: such a URL never changes content.
const HASHED = /-[A-Za-z0-9_-]{8,}\.[a-z0-9]+$/;
const IMMUTABLE = "public, max-age=31536000, immutable";

// The bundle needs nothing from elsewhere: same-origin script, styles, fetch and WebSocket.
const INDEX_HEADERS = {
  "cache-control": "no-cache",
  "content-security-policy":
    "default-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  "referrer-policy": "no-referrer",
  "x-content-type-options": "nosniff",
};

export type DashboardHandler = (req: http.IncomingMessage, res: http.ServerResponse) => boolean;

/**
 * Returns a request handler that answers `/`, `/index.html` and `/assets/*` and
 * returns false for every other path. The dist folder is read per request, so a
 * rebuild shows up without a restart and a missing build answers 503.
 */
export function createDashboardHandler(opts: { distDir?: string } = {}): DashboardHandler {
  const distDir = path.resolve(opts.distDir ?? DEFAULT_DIST);
  const assetsDir = path.join(distDir, "assets");
  // dev: look every file up when it is asked for (no listing taken at start), so that a
  // rebuild shows up without a restart and a bundle built after start is found.
  const files = sirv(distDir, { dev: true, etag: true, extensions: [], dotfiles: false });

  return (req, res) => {
    let pathname: string;
    try {
      pathname = new URL(req.url ?? "/", "http://localhost").pathname;
    } catch {
      return false;
    }
    const isIndex = pathname === "/" || pathname === "/index.html";
    if (!isIndex && !pathname.startsWith("/assets/")) return false;

    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain; charset=utf-8" }).end("method not allowed\n");
      return true;
    }
    if (isIndex) {
      req.url = "/index.html";
      serve(files, req, res, "index.html", INDEX_HEADERS, () =>
        plain(req, res, 503, `The dashboard is not built: run ${DASHBOARD_BUILD_COMMAND}\nGraphiQL is at /graphql.\n`),
      );
      return true;
    }

    const file = assetPath(assetsDir, pathname.slice("/assets/".length));
    if (!file) {
      plain(req, res, 400, "bad asset path\n");
      return true;
    }
    const cache = HASHED.test(file) ? IMMUTABLE : "no-cache";
    serve(files, req, res, file, { "cache-control": cache, "x-content-type-options": "nosniff" }, () =>
      plain(req, res, 404, "not found\n"),
    );
    return true;
  };
}

/** Sets our headers first (sirv keeps headers already on the response, and sends them with a 304 too). */
function serve(
  files: ReturnType<typeof sirv>,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  file: string,
  headers: Record<string, string>,
  missing: () => void,
): void {
  for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
  const type = lookup(file);
  if (type) res.setHeader("content-type", /^text\/|javascript|json/.test(type) ? `${type}; charset=utf-8` : type);
  files(req, res, () => {
    for (const k of [...Object.keys(headers), "content-type"]) res.removeHeader(k);
    missing();
  });
}

/** The file an asset URL names, or null when it is malformed or would leave the assets folder. */
function assetPath(assetsDir: string, encoded: string): string | null {
  let name: string;
  try {
    name = decodeURIComponent(encoded);
  } catch {
    return null;
  }
  if (!name || name.includes("\0") || name.includes("\\")) return null;
  const file = path.resolve(assetsDir, name);
  return file.startsWith(assetsDir + path.sep) ? file : null;
}

function plain(req: http.IncomingMessage, res: http.ServerResponse, status: number, text: string): void {
  const body = Buffer.from(text);
  res.writeHead(status, {
    "content-type": "text/plain; charset=utf-8",
    "content-length": String(body.length),
    "cache-control": "no-store",
  });
  res.end(req.method === "HEAD" ? undefined : body);
}
