// What /readyz checks: every store and the broker the gateway was handed.
import type { Check } from "../../common/http-health.ts";
import type { Deps } from "./context.ts";

export function readinessChecks(deps: Deps, extraChecks: Check[] = []): Check[] {
  return [
    { name: "postgresql:system1", check: () => deps.sources.SYSTEM1.$queryRaw`select 1` },
    { name: "postgresql:system2", check: () => deps.sources.SYSTEM2.$queryRaw`select 1` },
    { name: "postgresql:endput", check: () => deps.endput.$queryRaw`select 1` },
    { name: "redis", check: () => deps.redis.ping() },
    {
      name: "rabbitmq",
      check: async () => {
        if (!deps.broker.isConnected()) throw new Error("not connected");
      },
    },
    // A ping: counting documents reads the whole log on FerretDB.
    { name: "mongodb", check: () => deps.log.collection.db.command({ ping: 1 }) },
    ...extraChecks,
  ];
}
