import type DataLoader from "dataloader";
import type { YogaInitialContext } from "graphql-yoga";
import type { Redis } from "ioredis";

import type { AttemptLog, LogDocument } from "../../common/attempt-log.ts";
import type { Broker } from "../../common/broker.ts";
import type { Config } from "../../common/config.ts";
import type { System } from "../../common/contract.ts";
import type { Logger } from "../../common/logger.ts";
import type { EndputClient, SourceClients } from "../../common/prisma-clients.ts";
import type { Tracing } from "../../common/tracing.ts";
import type { LogScans } from "./log-scans.ts";
import type { GatewayMetrics } from "./metrics.ts";
import type { PubSub } from "./pubsub.ts";
import type { RequestBudget } from "./request-budget.ts";

export interface Deps {
  config: Config;
  logger: Logger;
  sources: SourceClients;
  endput: EndputClient;
  redis: Redis;
  broker: Broker;
  log: AttemptLog;
  pubsub: PubSub;
  metrics: GatewayMetrics;
  /** Absent: tracing off. */
  tracing?: Tracing;
}

export interface Context extends Deps {
  request?: YogaInitialContext["request"];
  authenticated: boolean;
  /** Every store call of this request goes through it (see request-budget.ts). */
  budget: RequestBudget;
  /** The gateway's pages that read the whole attempt log (see log-scans.ts). */
  logScans: LogScans;
  loaders: { history: DataLoader<{ system: System; orderId: number }, LogDocument[], string> };
}
