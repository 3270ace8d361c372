import { defineConfig } from "prisma/config";

import { migrationAdapter } from "./migration-adapter.ts";

export default defineConfig({
  experimental: { adapter: true },
  engine: "js",
  schema: "endput/schema.prisma",
  migrations: { path: "endput/migrations" },
  adapter: migrationAdapter,
});
