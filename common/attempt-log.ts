// The attempt log: one MongoDB document per processing attempt.
//
// Lookups filter on top-level fields only (messageId, system, orderId, status):
// FerretDB, the wire-compatible server used where mongod is not installed,
// pushes down top-level equality filters to its backend but not dotted paths or
// $in, so the query fields are flat. Each field costs every write on FerretDB, so
// none is stored twice.
//
// The first document of an attempt is also its claim: the unique index on
// (messageId, round, attempt, status) lets one copy of the attempt insert it, and the
// document records that copy (copyId). Only the owning copy acts on the attempt, so
// the claim lives exactly as long as the attempt's log entry.
//
// Retention is tiered: every document expires at `expiresAt`, except the history
// of a message sitting in the dead-letter queue, whose documents carry no expiry
// until it is redriven or discarded (attempt-log-retention.ts deletes expired ones).
import {
  type Collection,
  type Db,
  MongoServerError,
  MongoWriteConcernError,
  ObjectId,
  WriteConcern,
  type WriteConcernErrorResult,
} from "mongodb";

import { ensureRetention, type RetentionMode, scheduleSweeps, SWEEP_INDEX } from "./attempt-log-retention.ts";
import type { Config } from "./config.ts";
import type { ProcessingStatus, System } from "./contract.ts";
import { indexFerretBackend, isFerretDB } from "./ferretdb-indexes.ts";
import type { Logger } from "./logger.ts";

export type { RetentionMode } from "./attempt-log-retention.ts";

export const LOG_COLLECTION = "message_logs";

export interface LogDocument {
  _id?: ObjectId;
  messageId: string;
  round: number;
  attempt: number;
  status: ProcessingStatus;
  requiredAttempts: number | null;
  maxAttempts: number;
  system: System | null;
  orderId: number | null;
  /** When the gateway published the order; null for a rejected message that could not be read. */
  publishedAt: Date | null;
  /** Documents logged before publishedAt was a top-level field repeat system and orderId here. */
  source?: { publishedAt: Date | null };
  order: { product: string; price: string; securityCheck: boolean } | null;
  error: string | null;
  processedAt: Date;
  expiresAt: Date | null;
  /** Set on the terminal document of a dead-lettered message while it sits in the DLQ. */
  retained: boolean;
  durationMs: number | null;
  consumerId: string;
  /** The physical copy that logged (and so owns) the attempt; absent on documents logged before copies were recorded. */
  copyId?: string;
  /** The OpenTelemetry trace of the message's order (absent when tracing is off). */
  traceId?: string;
}

/** A log write the server refuses for this document whatever the retries (a validation error, a size limit). */
export class LogDocumentRefused extends Error {
  override name = "LogDocumentRefused";
  readonly index: number;
  readonly code: number | string | undefined;
  constructor(index: number, code: number | string | undefined, message: string) {
    super(message);
    this.index = index;
    this.code = code;
  }
}

export interface LogFilter {
  system?: System | null;
  status?: ProcessingStatus | null;
  orderId?: number | null;
  messageId?: string | null;
}

export interface AttemptLog {
  readonly collection: Collection<LogDocument>;
  /** Creates the indexes and picks the retention mode; returns it. */
  ensureIndexes(): Promise<RetentionMode>;
  retention(): RetentionMode;
  /** Inserts attempts; a document already logged (same message, round, attempt, status) is skipped. */
  insert(docs: LogDocument[]): Promise<number>;
  /**
   * Inserts attempts as claims: returns, per document, the copy that owns its attempt
   * (the copy whose document was inserted first; null for a document logged without one).
   * Throws LogDocumentRefused for a document the server refuses for good.
   */
  claim(docs: LogDocument[]): Promise<(string | null)[]>;
  /** Deletes the entries of these attempts (an outcome the stores then refused to hold); absent ones are ignored. */
  withdraw(attempts: Pick<LogDocument, "messageId" | "round" | "attempt" | "status">[]): Promise<void>;
  /** Keeps the whole history of these dead-lettered messages (no expiry) until they are redriven. */
  retain(messageIds: string[]): Promise<void>;
  /** Lets the histories of redriven or discarded messages expire again from now. */
  release(messageIds: string[]): Promise<void>;
  /** Deletes expired documents (sweeper mode) in one query whatever is retained; returns how many. */
  sweep(now?: Date): Promise<number>;
  /**
   * Sweeps on an interval while the server has no TTL index; `turn` says whether
   * this process sweeps this time (one of several consumers is enough), holding the turn for
   * `holdMs`. The interval grows with the time a sweep takes. Returns a stopper.
   */
  startSweeper(turn?: (holdMs: number) => Promise<boolean>): () => void;
  history(messageId: string): Promise<LogDocument[]>;
  historyForOrders(keys: { system: System; orderId: number }[]): Promise<LogDocument[]>;
  page(filter: LogFilter, first: number, afterId?: ObjectId): Promise<LogDocument[]>;
  /**
   * Whether `page(filter, …)` reads every entry the filter matches: on FerretDB, which sorts in
   * its own process, unless an order or message id narrows it through a lookup index.
   */
  scans(filter: LogFilter): boolean;
  count(filter: LogFilter): Promise<number>;
  expiryFrom(processedAt: Date): Date;
}

function toQuery(filter: LogFilter) {
  const q: Record<string, unknown> = {};
  if (filter.system) q.system = filter.system;
  if (filter.status) q.status = filter.status;
  if (filter.orderId != null) q.orderId = filter.orderId;
  if (filter.messageId) q.messageId = filter.messageId;
  return q;
}

const attemptOf = (d: Pick<LogDocument, "messageId" | "round" | "attempt" | "status">) =>
  `${d.messageId}:${d.round}:${d.attempt}:${d.status}`;

/** Runs fn over items, at most `width` at a time: a burst of one-message queries must not swamp the server. */
export async function eachLimited<T, R>(items: T[], width: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = [];
  for (let i = 0; i < items.length; i += width) out.push(...(await Promise.all(items.slice(i, i + width).map(fn))));
  return out;
}

/** How many one-message queries run at once. */
export const PER_MESSAGE_WIDTH = 8;

// A DISCARDED entry (attempt 0) closes its round: it comes after the round's attempts.
const closesRound = (d: LogDocument) => (d.status === "DISCARDED" ? 1 : 0);
const byProcessingOrder = (a: LogDocument, b: LogDocument) =>
  a.round - b.round ||
  closesRound(a) - closesRound(b) ||
  a.attempt - b.attempt ||
  a.processedAt.getTime() - b.processedAt.getTime();

// A log document's BSON is at most this plus three bytes per character of its error, the one
// field without a bound: a command of documents whose bounds add up to COMMAND_BYTES stays well
// under the 16 MB a command may hold.
const DOCUMENT_BYTES = 4096;
const COMMAND_BYTES = 8 * 1024 * 1024;
const bytesBound = (d: LogDocument) => DOCUMENT_BYTES + 3 * (d.error?.length ?? 0);
const DUPLICATE_KEY = 11000;

/**
 * Inserts the documents with unordered `insert` commands (one for a consumer's batch). Returns how
 * many went in and the indexes of those already logged (the unique index refused them); throws
 * LogDocumentRefused for any other document the server refuses, and the driver's error for a lost
 * connection or a command refused as a whole. insertMany sends the same commands through the
 * driver's bulk writer, which sizes every document as BSON before serialising it (BENCHMARKS.md).
 */
async function insertUnordered(db: Db, docs: LogDocument[]): Promise<{ inserted: number; duplicates: number[] }> {
  let inserted = 0;
  const duplicates: number[] = [];
  for (const [start, end] of commandRanges(docs)) {
    const documents = docs.slice(start, end);
    // As insertMany does: the ids are the client's, so a retried insert names the same documents.
    for (const d of documents) d._id ??= new ObjectId();
    const command = { insert: LOG_COLLECTION, documents, ordered: false };
    // A write concern of the connection string (w=majority, say) holds for these writes as for insertMany's.
    const reply = await db.command(db.writeConcern ? WriteConcern.apply(command, db.writeConcern) : command);
    if (reply.writeConcernError) throw new MongoWriteConcernError(reply as unknown as WriteConcernErrorResult);
    inserted += Number(reply.n ?? 0);
    for (const e of (reply.writeErrors ?? []) as { index: number; code?: number; errmsg?: string }[]) {
      if (e.code !== DUPLICATE_KEY) throw new LogDocumentRefused(start + e.index, e.code, e.errmsg ?? "refused");
      duplicates.push(start + e.index);
    }
  }
  return { inserted, duplicates };
}

/** Consecutive [start, end) ranges of `docs` whose bounds fit one command (at least one document each). */
function* commandRanges(docs: readonly LogDocument[]): Generator<[number, number]> {
  let start = 0;
  let bytes = 0;
  for (let i = 0; i < docs.length; i++) {
    const size = bytesBound(docs[i]!);
    if (i > start && bytes + size > COMMAND_BYTES) {
      yield [start, i];
      start = i;
      bytes = 0;
    }
    bytes += size;
  }
  if (start < docs.length) yield [start, docs.length];
}

/** Inserts attempts; a document already logged (same message, round, attempt, status) is skipped. */
async function insertAttempts(db: Db, docs: LogDocument[]): Promise<number> {
  // A redelivered message logs the same attempt again: the unique index turns that into a no-op.
  return (await insertUnordered(db, docs)).inserted;
}

/** Inserts attempts as claims; returns each document's owning copy (AttemptLog.claim). */
async function claimAttempts(db: Db, collection: Collection<LogDocument>, docs: LogDocument[]): Promise<(string | null)[]> {
  const owners = docs.map((d) => d.copyId ?? null);
  const conflicts = (await insertUnordered(db, docs)).duplicates;
  if (conflicts.length === 0) return owners;
  // One lookup per message (a top-level equality every server serves from an index).
  const ids = [...new Set(conflicts.map((i) => docs[i]!.messageId))];
  const found = await eachLimited(ids, PER_MESSAGE_WIDTH, (messageId) =>
    collection.find({ messageId }, { projection: { messageId: 1, round: 1, attempt: 1, status: 1, copyId: 1 } }).toArray(),
  );
  const owner = new Map(found.flat().map((d) => [attemptOf(d), d.copyId ?? null]));
  for (const i of conflicts) owners[i] = owner.get(attemptOf(docs[i]!)) ?? null;
  return owners;
}

const INDEX_NOT_FOUND = 27;

/** The indexes MongoDB answers the log's lookups from: Order.history, messages by status. */
const QUERY_INDEXES = [
  { key: { system: 1, orderId: 1 }, name: "system_order" },
  { key: { status: 1, _id: -1 }, name: "status_recent" },
] as const;

/** Drops these indexes where present; one another process (the gateway, a consumer) drops first is fine. */
async function dropIndexes(collection: Collection<LogDocument>, names: readonly string[]): Promise<void> {
  const present = new Set((await collection.indexes()).map((i) => i.name));
  for (const name of names) {
    if (!present.has(name)) continue;
    await collection.dropIndex(name).catch((err: unknown) => {
      if (!(err instanceof MongoServerError && err.code === INDEX_NOT_FOUND)) throw err;
    });
  }
}

export function createAttemptLog(opts: { db: Db; config: Config; logger: Logger }): AttemptLog {
  const { db, config, logger } = opts;
  const collection = db.collection<LogDocument>(LOG_COLLECTION);
  let mode: RetentionMode = "sweeper";
  // Set by ensureIndexes. FerretDB pushes down equalities but not $in (ferretdb-indexes.ts).
  let equalitiesOnly = false;
  const ttlMs = config.mongo.ttlSeconds * 1000;

  async function sweep(now = new Date()) {
    // Retained documents have no expiry, so the query is the same size whatever is retained.
    const r = await collection.deleteMany({ expiresAt: { $ne: null, $lte: now } });
    return r.deletedCount;
  }

  return {
    collection,
    async ensureIndexes() {
      await collection.createIndex({ messageId: 1, round: 1, attempt: 1, status: 1 }, { name: "message_attempt", unique: true });
      const ferretdb = await isFerretDB(db);
      equalitiesOnly = ferretdb;
      // FerretDB answers no query from a btree index (ferretdb-indexes.ts) and each one costs
      // every log write: there only the unique one above, and earlier versions' are dropped.
      if (ferretdb) await dropIndexes(collection, [...QUERY_INDEXES.map((i) => i.name), SWEEP_INDEX]);
      else for (const { key, name } of QUERY_INDEXES) await collection.createIndex(key, { name });
      mode = await ensureRetention(collection, config, logger, { sweepIndex: !ferretdb });
      const backendUrl = config.mongo.ferretdbBackendUrl;
      if (ferretdb)
        await indexFerretBackend({ db, collection: LOG_COLLECTION, fields: ["messageId", "orderId"], backendUrl, logger });
      return mode;
    },
    retention: () => mode,
    expiryFrom: (processedAt) => new Date(processedAt.getTime() + ttlMs),
    insert: (docs) => insertAttempts(db, docs),
    claim: (docs) => claimAttempts(db, collection, docs),
    async withdraw(attempts) {
      await eachLimited(attempts, PER_MESSAGE_WIDTH, ({ messageId, round, attempt, status }) =>
        collection.deleteOne({ messageId, round, attempt, status }),
      );
    },
    async retain(messageIds) {
      // One update per message: a top-level equality is served from an index where $in is not (FerretDB).
      await eachLimited([...new Set(messageIds)], PER_MESSAGE_WIDTH, (messageId) =>
        collection.updateMany({ messageId, expiresAt: { $ne: null } }, { $set: { expiresAt: null } }),
      );
    },
    async release(messageIds) {
      if (messageIds.length === 0) return;
      const expiresAt = new Date(Date.now() + ttlMs);
      for (const messageId of messageIds) {
        await collection.updateMany({ messageId, retained: true }, { $set: { retained: false } });
        await collection.updateMany({ messageId }, { $set: { expiresAt } });
      }
    },
    sweep,
    startSweeper(turn = async () => true) {
      if (mode !== "sweeper") return () => undefined;
      return scheduleSweeps({ sweep: () => this.sweep(), turn, intervalMs: config.mongo.sweepIntervalMs, logger });
    },
    async history(messageId) {
      const docs = await collection.find({ messageId }).toArray();
      return docs.sort(byProcessingOrder);
    },
    async historyForOrders(keys) {
      if (keys.length === 0) return [];
      // On FerretDB, `orderId: { $in }` would be filtered in its own process after reading every
      // document of the system: one indexed equality per order instead.
      if (equalitiesOnly) {
        const parts = await eachLimited(keys, PER_MESSAGE_WIDTH, ({ system, orderId }) =>
          collection.find({ system, orderId }).toArray(),
        );
        return parts.flat().sort(byProcessingOrder);
      }
      const bySystem = new Map<System, number[]>();
      for (const k of keys) bySystem.set(k.system, [...(bySystem.get(k.system) ?? []), k.orderId]);
      const parts = await Promise.all(
        [...bySystem].map(([system, ids]) => collection.find({ system, orderId: { $in: ids } }).toArray()),
      );
      return parts.flat().sort(byProcessingOrder);
    },
    async page(filter, first, afterId) {
      const q = toQuery(filter);
      if (afterId) q._id = { $lt: afterId };
      return collection.find(q).sort({ _id: -1 }).limit(first).toArray();
    },
    scans: (filter) => equalitiesOnly && filter.orderId == null && !filter.messageId,
    count: (filter) => collection.countDocuments(toQuery(filter)),
  };
}

export function parseObjectId(id: string): ObjectId | undefined {
  return ObjectId.isValid(id) && /^[0-9a-f]{24}$/i.test(id) ? new ObjectId(id) : undefined;
}
