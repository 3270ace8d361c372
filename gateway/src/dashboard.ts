// Serves the operator dashboard's built bundle (gateway/dashboard/dist): index.html
// at `/`, hashed assets under `/assets/`. Everything else falls through to the caller.
import fs from "node:fs";
import type http from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const DASHBOARD_BUILD_COMMAND = "npx vite build --config gateway/dashboard/vite.config.ts";

const DEFAULT_DIST = fileURLToPath(new URL("../dashboard/dist", import.meta.url));

const CONTENT_TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".map": "application/json; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".webp": "image/webp",
  ".woff2": "font/woff2",
  ".txt": "text/plain; charset=utf-8",
};

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
      void serveFile(req, res, path.join(distDir, "index.html"), INDEX_HEADERS, () =>
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
    void serveFile(req, res, file, { "cache-control": cache, "x-content-type-options": "nosniff" }, () =>
      plain(req, res, 404, "not found\n"),
    );
    return true;
  };
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

async function serveFile(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  file: string,
  headers: Record<string, string>,
  missing: () => void,
): Promise<void> {
  let stat: fs.Stats;
  try {
    stat = await fs.promises.stat(file);
  } catch {
    return missing();
  }
  if (!stat.isFile()) return missing();

  const etag = `W/"${stat.size.toString(16)}-${Math.floor(stat.mtimeMs).toString(16)}"`;
  const common = {
    ...headers,
    "content-type": CONTENT_TYPES[path.extname(file).toLowerCase()] ?? "application/octet-stream",
    etag,
    "last-modified": stat.mtime.toUTCString(),
  };
  if (req.headers["if-none-match"] === etag) {
    res.writeHead(304, common).end();
    return;
  }
  res.writeHead(200, { ...common, "content-length": String(stat.size) });
  if (req.method === "HEAD") {
    res.end();
    return;
  }
  const stream = fs.createReadStream(file);
  stream.on("error", () => res.destroy());
  stream.pipe(res);
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
