// The Prisma clients of the source systems and the endput, over the pg driver adapter: the
// gateway's reads and writes (seeding, publishing, the stats). Whoever creates a client closes it.
import { PrismaPg } from "@prisma/adapter-pg";

import type { Config } from "./config.ts";
import type { System } from "./contract.ts";
import { PrismaClient as EndputClient } from "./prisma/endput/client.ts";
import { PrismaClient as SourceClient } from "./prisma/source/client.ts";

export { EndputClient, SourceClient };
export type SourceClients = Record<System, SourceClient>;

function pgAdapter(url: string, max: number) {
  return new PrismaPg({ connectionString: url, max, connectionTimeoutMillis: 5000 });
}

export function createSourceClients(config: Config): SourceClients {
  return {
    SYSTEM1: new SourceClient({ adapter: pgAdapter(config.databases.system1, config.databases.poolSize) }),
    SYSTEM2: new SourceClient({ adapter: pgAdapter(config.databases.system2, config.databases.poolSize) }),
  };
}

export function createEndputClient(config: Config): EndputClient {
  return new EndputClient({ adapter: pgAdapter(config.databases.endput, config.databases.poolSize) });
}
