// Short-lived channels for management work (peeking, counting), on a connection of their own:
// the broker's flow control, which throttles a busy publisher's connection as a whole, does not
// hold these calls up.
import type { Channel, ChannelModel } from "amqplib";

import type { NodeDialer } from "./broker-nodes.ts";
import { DependencyError, errorMessage } from "./errors.ts";
import type { Logger } from "./logger.ts";

export interface ManagementConnection {
  withChannel<T>(fn: (channel: Channel) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

export function createManagementConnection(dialer: NodeDialer, logger: Logger): ManagementConnection {
  let admin: Promise<ChannelModel> | undefined;
  /** Opened on first use and again after it is lost. */
  function connection(): Promise<ChannelModel> {
    admin ??= dialer.connectAny("-admin").then(
      (conn) => {
        conn.on("error", (err: Error) => logger.warn({ err: errorMessage(err) }, "rabbitmq management connection error"));
        conn.on("close", () => (admin = undefined));
        return conn;
      },
      (err: unknown) => {
        admin = undefined;
        throw new DependencyError("rabbitmq", errorMessage(err), { cause: err });
      },
    );
    return admin;
  }
  return {
    async withChannel(fn) {
      const ch = await (await connection()).createChannel();
      ch.on("error", () => undefined);
      try {
        return await fn(ch);
      } finally {
        await ch.close().catch(() => undefined);
      }
    },
    async close() {
      const management = admin;
      admin = undefined;
      await management?.then((c) => c.close()).catch(() => undefined);
    },
  };
}
