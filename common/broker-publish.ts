// Publishing on the broker's shared confirm channel: one copy per call (a fresh copy id), resolved
// when the broker confirms it, failing fast with a DependencyError while there is no channel
// instead of buffering, so callers never mistake an unsent message for a sent one.
import { randomUUID } from "node:crypto";

import type { ChannelModel, ConfirmChannel, Options } from "amqplib";

import { HEADERS, withNewCopyId } from "./contract.ts";
import { DependencyError, errorMessage } from "./errors.ts";
import type { Logger } from "./logger.ts";

/**
 * The headers of one published copy. A frozen headers object (publishPending freezes the one its
 * batch shares) gets a headers object of the broker's own, made once, whose copy id each publish
 * overwrites: amqplib encodes the properties into the frame inside publish(), synchronously, so
 * the object is free again when publish() returns, and a batch allocates no headers per message.
 */
function copyHeaders(): (headers: Options.Publish["headers"]) => Record<string, unknown> {
  const owned = new WeakMap<object, Record<string, unknown>>();
  return (headers) => {
    if (!headers || !Object.isFrozen(headers)) return withNewCopyId(headers);
    const mine = owned.get(headers);
    if (!mine) {
      const fresh = withNewCopyId(headers);
      owned.set(headers, fresh);
      return fresh;
    }
    mine[HEADERS.copyId] = randomUUID();
    return mine;
  };
}

export type Publish = (exchange: string, routingKey: string, content: Buffer, options: Options.Publish) => Promise<void>;

/** Publishes on whatever channel `channel()` holds at the time of the call. */
export function createConfirmPublish(channel: () => ConfirmChannel | undefined): Publish {
  const headersOfCopy = copyHeaders();
  let drained: Promise<void> | undefined;
  return async (exchange, routingKey, content, options) => {
    if (drained) await drained;
    const ch = channel();
    if (!ch) throw new DependencyError("rabbitmq", "not connected");
    await new Promise<void>((resolve, reject) => {
      let ok: boolean;
      try {
        ok = ch.publish(exchange, routingKey, content, { ...options, headers: headersOfCopy(options.headers) }, (err) =>
          err
            ? reject(new DependencyError("rabbitmq", "message was not confirmed (nack or channel closed)", { cause: err }))
            : resolve(),
        );
      } catch (err) {
        reject(new DependencyError("rabbitmq", errorMessage(err), { cause: err }));
        return;
      }
      if (!ok && !drained) {
        // Socket buffer is full: later publishes wait for it to drain (or the channel to go).
        drained = new Promise<void>((res) => {
          const done = () => {
            drained = undefined;
            ch.off("drain", done);
            ch.off("close", done);
            res();
          };
          ch.on("drain", done);
          ch.on("close", done);
        });
      }
    });
  };
}

/** Where the publisher channel of one connection is kept, and whether that connection is still the live one. */
export interface PublisherSlot {
  get(): ConfirmChannel | undefined;
  set(ch: ConfirmChannel | undefined): void;
  live(): boolean;
}

/** Opens the confirm channel; a channel error closes only the channel, so a new one opens on the same connection. */
export async function openPublisher(conn: ChannelModel, slot: PublisherSlot, logger: Logger): Promise<ConfirmChannel> {
  const ch = await conn.createConfirmChannel();
  ch.on("error", (err: Error) => logger.warn({ err: errorMessage(err) }, "rabbitmq publish channel error"));
  ch.on("close", () => {
    if (slot.get() !== ch) return;
    slot.set(undefined);
    if (!slot.live()) return;
    openPublisher(conn, slot, logger)
      .then((next) => {
        if (slot.live()) slot.set(next);
        else void next.close().catch(() => undefined);
      })
      .catch((err) => logger.warn({ err: errorMessage(err) }, "rabbitmq publish channel could not be reopened"));
  });
  return ch;
}
