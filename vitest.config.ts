import { defineConfig } from "vitest/config";

export default defineConfig({
  // Source files would otherwise get graphql's .mjs build while dependencies load the
  // CommonJS one, and `instanceof GraphQLError` would fail across the two copies.
  resolve: { alias: [{ find: /^graphql$/, replacement: "graphql/index.js" }] },
  test: {
    include: ["tests/**/*.test.ts"],
    exclude: ["tests/faults/**", "node_modules/**"],
    globalSetup: ["tests/support/global-setup.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: "forks",
    maxWorkers: 2,
    reporters: ["default"],
    allowOnly: false,
  },
});
