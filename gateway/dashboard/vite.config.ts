// The operator dashboard: a static Preact bundle the gateway serves at `/`.
// Build: vite build --config gateway/dashboard/vite.config.ts (writes gateway/dashboard/dist/).
// Develop: vite --config gateway/dashboard/vite.config.ts, with the gateway running on :4000.
import { fileURLToPath } from "node:url";

import { defineConfig } from "vite";

const gateway = "http://127.0.0.1:4000";

export default defineConfig({
  root: fileURLToPath(new URL(".", import.meta.url)),
  base: "/",
  publicDir: false,
  clearScreen: false,
  oxc: { jsx: { runtime: "automatic", importSource: "preact" } },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    // Served by the gateway, not a CDN: one small entry chunk is all there is.
    modulePreload: { polyfill: false },
    chunkSizeWarningLimit: 200,
  },
  server: {
    proxy: { "/graphql": { target: gateway, ws: true, changeOrigin: true } },
  },
});
