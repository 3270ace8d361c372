import pino, { type Logger } from "pino";

import type { Config } from "./config.ts";

export type { Logger };

export function createLogger(config: Config, name: string): Logger {
  return pino({
    name,
    level: config.logs.level,
    base: { service: name },
    timestamp: pino.stdTimeFunctions.isoTime,
    ...(config.logs.pretty
      ? {
          transport: {
            target: "pino-pretty",
            options: { colorize: true, translateTime: "HH:MM:ss.l", ignore: "pid,hostname,service" },
          },
        }
      : {}),
  });
}
