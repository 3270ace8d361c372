// The CLI's JS schema engine needs an adapter that reads PostgreSQL's `name` type,
// which @prisma/adapter-pg 6.19 cannot; the runtime keeps using 6.19.
import { PrismaPg } from "adapter-pg-migrate";

import { prismaCliDatabaseUrl } from "../common/config.ts";

export async function migrationAdapter() {
  const connectionString = prismaCliDatabaseUrl();
  // Idle connections would keep the CLI alive for the pool's idle timeout.
  return new PrismaPg({ connectionString, idleTimeoutMillis: 50, allowExitOnIdle: true });
}
