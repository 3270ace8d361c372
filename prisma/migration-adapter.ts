// The CLI's JS schema engine needs an adapter that reads PostgreSQL's `name` type,
// which @prisma/adapter-pg 6.19 cannot; the runtime keeps using 6.19.
import { PrismaPg } from "adapter-pg-migrate";

export async function migrationAdapter() {
  const connectionString = process.env.DATABASE_URL;
  if (!connectionString) throw new Error("DATABASE_URL must be set for the Prisma CLI");
  // Idle connections would keep the CLI alive for the pool's idle timeout.
  return new PrismaPg({ connectionString, idleTimeoutMillis: 50, allowExitOnIdle: true });
}
