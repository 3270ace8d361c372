import { defineConfig } from "prisma/config";

import { migrationAdapter } from "./migration-adapter.ts";

export default defineConfig({
  experimental: { adapter: true },
  engine: "js",
  schema: "source/schema.prisma",
  migrations: { path: "source/migrations" },
  adapter: migrationAdapter,
});
