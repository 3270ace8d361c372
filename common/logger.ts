import pino, { type Logger } from "pino";

import type { Config } from "./config.ts";

export type { Logger };

export function createLogger(config: Config, name: string): Logger {
  const options = { name, level: config.logs.level, base: { service: name }, timestamp: pino.stdTimeFunctions.isoTime };
  if (config.logs.pretty)
    return pino({
      ...options,
      transport: {
        target: "pino-pretty",
        options: { colorize: true, translateTime: "HH:MM:ss.l", ignore: "pid,hostname,service" },
      },
    });
  // Written synchronously, as Node writes stdout to files and pipes on Linux: with pino's
  // asynchronous default, a process that exits while a write is in flight loses that line or
  // appends it after the ones flushed at exit, so the last lines of a shutdown came out of order.
  return pino(options, pino.destination({ dest: 1, sync: true }));
}
