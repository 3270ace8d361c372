// Publishes the rows of a source system that were not published yet.
//
// Gap-free: an id cursor alone skips a row whose transaction commits after a
// higher id was published, and neither xids nor commit order follow id order (an
// id is drawn before its transaction writes, so before it has an xid). A batch
// publishes the rows after the cursor only while their ids are contiguous: a row
// that commits later can only fill a gap. At a gap, reading stops unless the
// gap is dead, that is, no transaction that may still write its ids is in flight:
// every id up to the sequence's last value was drawn by a transaction that then
// held a lock on the sequence until its end (nextval takes one), so when, after
// reading that value and before the snapshot, no other transaction holds the lock,
// every missing id up to it was rolled back, deleted or never used. The cursor
// moves only to the highest id whose message the broker confirmed, so a crash
// re-publishes at most the unconfirmed tail (with the same message ids) and
// never skips a row. Tests: publish.test.ts "never skips a row whose ...".
import type { Options } from "amqplib";

import type { Broker } from "../../../common/broker.ts";
import type { Config } from "../../../common/config.ts";
import {
  CONTENT_TYPE,
  contractHeaders,
  encodeMessage,
  HEADERS,
  type OrderMessage,
  orderMessageSchema,
  requiredAttemptsFor,
  type System,
} from "../../../common/contract.ts";
import type { Logger } from "../../../common/logger.ts";
import type { SourceClient } from "../../../common/prisma-clients.ts";
import { noTracing, type Tracing } from "../../../common/tracing.ts";
import { asDomainError, badInput, using } from "../errors.ts";
import type { GatewayMetrics } from "../metrics.ts";
import type { Cursors, PublishedMark, PublishLock } from "./cursors.ts";
import { fractionOf, orderMessageId } from "./message-id.ts";

export interface PublishResult {
  system: System;
  published: number;
  fromId: number | null;
  toId: number | null;
  cursor: number;
  /** Rows left behind at a gap in the ids that a transaction still in flight may fill. */
  waitingOnTransactions: boolean;
}

interface Row {
  id: number;
  product: string;
  price: string;
  security_check: boolean;
}

/**
 * Up to `take` rows after the cursor, and what is known about the ids missing between them.
 * The order of the three reads is what makes a gap judgement sound: the sequence's last value,
 * then the transactions holding the sequence, then the rows (the snapshot). Only nextval's lock
 * counts: a reader of the sequence (pg_dump, say) draws nothing.
 */
async function readAfter(source: SourceClient, cursor: number, take: number) {
  return using("postgresql", async () => {
    const [{ drawn }] = await source.$queryRaw<[{ drawn: string | null }]>`
      select pg_sequence_last_value(pg_get_serial_sequence('orders', 'id')::regclass)::text as drawn`;
    const [{ drawing }] = await source.$queryRaw<[{ drawing: number }]>`
      select count(*)::int as drawing from pg_locks
      where locktype = 'relation' and mode = 'RowExclusiveLock'
        and relation = pg_get_serial_sequence('orders', 'id')::regclass
        and database = (select oid from pg_database where datname = current_database())
        and pid is distinct from pg_backend_pid()`;
    const rows = await source.$queryRaw<Row[]>`
      select id, product, price::text as price, security_check from orders where id > ${cursor} order by id limit ${take}`;
    return { rows, drawnUpTo: drawn === null ? 0 : Number(drawn), drawing };
  });
}

/** How many of the rows can be published: up to the first gap that a transaction in flight may still fill. */
function settledPrefix(read: Awaited<ReturnType<typeof readAfter>>, cursor: number): number {
  const { rows, drawnUpTo, drawing } = read;
  let expected = cursor + 1;
  for (let i = 0; i < rows.length; i++) {
    const id = rows[i]!.id;
    if (id !== expected && (drawing > 0 || id - 1 > drawnUpTo)) return i;
    expected = id + 1;
  }
  return rows.length;
}

const MAX_INT = 2_147_483_647;

export async function publishPending(deps: {
  system: System;
  limit: number | null | undefined;
  source: SourceClient;
  broker: Broker;
  cursors: Cursors;
  config: Config;
  logger: Logger;
  metrics?: GatewayMetrics;
  random?: () => number;
  tracing?: Tracing;
}): Promise<PublishResult> {
  const { system, source, broker, cursors, config, logger, tracing = noTracing } = deps;
  const limit = deps.limit ?? Number.POSITIVE_INFINITY;
  if (deps.limit != null && (!Number.isInteger(deps.limit) || deps.limit < 1 || deps.limit > MAX_INT)) {
    throw badInput("limit must be a positive whole number", "limit");
  }
  const { exchange, routingKey } = broker.topology;
  const lock = await cursors.lock(system);
  try {
    let cursor = await cursors.get(system);
    let { highWater } = await markOf(lock, source, cursor);
    let published = 0;
    let fromId: number | null = null;
    let waiting = false;
    while (published < limit) {
      const take = Math.min(config.gateway.publishBatchSize, limit - published);
      const read = await readAfter(source, cursor, take);
      const { rows } = read;
      const ready = settledPrefix(read, cursor);
      if (ready < rows.length) waiting = true;
      if (ready === 0) break;

      try {
        const encode = createEncoder(system, config.retry.maxAttempts, deps.random);
        await tracing.publishBatch({ system, fromId: rows[0]!.id, toId: rows[ready - 1]!.id, count: ready }, (message) =>
          publishConfirmed(rows, ready, (row) => {
            const { body, options } = encode(row);
            return message({ messageId: options.messageId!, system, orderId: row.id }, options, (o) =>
              broker.publish(exchange, routingKey, body, o),
            );
          }),
        );
      } catch (err) {
        // Nothing past the last confirmed batch is claimed: the cursor stays where it is.
        logger.warn({ system, cursor, err: (err as Error).message }, "publish failed; cursor not advanced");
        throw asDomainError(err);
      }
      const last = rows[ready - 1]!.id;
      // A row at or below the high-water mark was counted when it was first published.
      let fresh = 0;
      for (let i = 0; i < ready; i++) if (rows[i]!.id > highWater) fresh++;
      await lock.advance(last, fresh);
      highWater = Math.max(highWater, last);
      deps.metrics?.published.inc({ system }, ready);
      deps.metrics?.publishBatches.inc({ system });
      fromId ??= rows[0]!.id;
      cursor = last;
      published += ready;
      if (waiting || rows.length < take) break;
    }
    logger.info(
      { system, published, fromId, toId: published ? cursor : null, cursor, waitingOnTransactions: waiting },
      "published pending orders",
    );
    return { system, published, fromId, toId: published ? cursor : null, cursor, waitingOnTransactions: waiting };
  } finally {
    await lock.release();
  }
}

/**
 * The published mark, recorded on first use where a cursor predates it: every row up to the
 * cursor that is still in the source counts as published.
 */
async function markOf(lock: PublishLock, source: SourceClient, cursor: number): Promise<PublishedMark> {
  const mark = await lock.mark();
  if (mark) return mark;
  const count = cursor === 0 ? 0 : await using("postgresql", () => source.order.count({ where: { id: { lte: cursor } } }));
  const initial = { count, highWater: cursor };
  await lock.initMark(initial);
  return initial;
}

const orderSchema = orderMessageSchema.shape.order;

/**
 * The message for a row, with what every row of one batch shares computed once. The first
 * message of a batch goes through the whole contract; after it only the order, the one part
 * read from the source database, is checked again: the rest is built here the same way for every
 * row (ids of an int column above the cursor, requiredAttempts within 1..MAX_ATTEMPTS + 1). A
 * row that fails goes through the whole contract too, so the error is the contract's own.
 */
function createEncoder(system: System, maxAttempts: number, random: (() => number) | undefined) {
  const publishedAt = new Date().toISOString();
  const timestamp = Math.floor(Date.now() / 1000);
  // One object for the batch, frozen so that the broker may keep its own copy beside it.
  const headers = Object.freeze({ ...contractHeaders(), [HEADERS.attempt]: 1, [HEADERS.round]: 0, "x-system": system });
  let checked = false;
  return (row: Row): { body: Buffer; options: Options.Publish } => {
    const messageId = orderMessageId(system, row.id);
    const order = { product: row.product, price: row.price, securityCheck: row.security_check };
    const message: OrderMessage = {
      messageId,
      source: { system, orderId: row.id },
      order,
      requiredAttempts: requiredAttemptsFor(row.security_check, maxAttempts, random ?? (() => fractionOf(messageId))),
      publishedAt,
    };
    const body = checked && orderSchema.safeParse(order).success ? Buffer.from(JSON.stringify(message)) : encodeMessage(message);
    checked = true;
    return { body, options: { persistent: true, contentType: CONTENT_TYPE, messageId, timestamp, type: "order", headers } };
  };
}

// Unconfirmed messages per publishing call. The broker confirms at its full rate with a few
// hundred outstanding (13 ms median here); handing it a whole batch of 2,000 at once only makes
// them wait in the gateway's buffers for ~200 ms, long enough for each to be promoted to the old
// heap (BENCHMARKS.md, gateway memory while publishing).
const CONFIRM_WINDOW = 256;

/**
 * Publishes rows[0..count) keeping at most CONFIRM_WINDOW unconfirmed, each encoded only when it
 * is sent. Resolves when the broker has confirmed them all; rejects at the first failure (a row
 * that breaks the contract, a nack, a lost channel) and sends nothing more.
 */
function publishConfirmed<T>(rows: readonly T[], count: number, publish: (row: T) => Promise<void>): Promise<void> {
  return new Promise((resolve, reject) => {
    let sent = 0;
    let confirmed = 0;
    let failed = false;
    const fail = (err: unknown) => {
      failed = true;
      reject(err);
    };
    const onConfirm = () => {
      if (++confirmed === count) resolve();
      else if (sent - confirmed <= CONFIRM_WINDOW / 2) fill();
    };
    // Refills in halves of the window, so each synchronous burst stays short.
    const fill = () => {
      try {
        while (!failed && sent < count && sent - confirmed < CONFIRM_WINDOW) publish(rows[sent++]!).then(onConfirm, fail);
      } catch (err) {
        fail(err);
      }
    };
    fill();
  });
}

export async function resetCursor(deps: { system: System; to: number; cursors: Cursors }): Promise<void> {
  const { system, to, cursors } = deps;
  if (!Number.isInteger(to) || to < 0 || to > MAX_INT) throw badInput("to must be a whole number >= 0", "to");
  const lock = await cursors.lock(system);
  try {
    await lock.setCursor(to);
  } finally {
    await lock.release();
  }
}
