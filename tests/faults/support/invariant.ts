// The invariant every scenario ends with, read straight from the stores:
//   - endput holds every security_check = true order of both systems exactly once;
//   - the DLQ holds every false order exactly once (plus the REJECTED messages a scenario sent);
//   - every order's round-0 attempt history is 1..n with no gap and no repeated attempt,
//     ending in SUCCEEDED (true) or DEAD_LETTERED after MAX_ATTEMPTS (false);
//   - each Redis cursor equals the highest id of its source table;
//   - the Redis counters (pipelineStats) equal the attempt log: one count per logged attempt.
import type { ConsumeMessage } from "amqplib";
import pg from "pg";
import { expect } from "vitest";

import { HEADERS, type ProcessingStatus, type System, SYSTEMS } from "../../../common/contract.ts";
import { counterField, counterKey } from "../../../common/keys.ts";
import { orderMessageId } from "../../../gateway/src/services/message-id.ts";
import { URLS } from "./fault-services.ts";
import { attemptsDone } from "./ops.ts";
import type { ScenarioReport } from "./report.ts";
import type { World } from "./world.ts";

export interface DrainOptions {
  /** A hang detector, not a speed target (make bench measures speed): 300 s unless a scenario says more. */
  timeoutMs?: number;
  /** How long every queue must stay empty (longer than the management API's ~5 s sampling). */
  quietMs?: number;
  /**
   * A hang detector that does not depend on the machine's speed: fails once the consumers have
   * processed no attempt for this long, whatever `timeoutMs` still allows.
   */
  stalledMs?: number;
}

class StalledError extends Error {}

/** Waits until the primary and wait queues are empty and nothing is unacked, continuously for quietMs. */
export async function waitDrained(world: World, opts: DrainOptions = {}): Promise<void> {
  const { timeoutMs = 300_000, quietMs = 6_000, stalledMs } = opts;
  const names = [world.topology.primary, ...world.topology.waitQueues.map((w) => w.name)];
  const deadline = Date.now() + timeoutMs;
  let quietSince: number | undefined;
  let last = "";
  let attempts = -1;
  let progressAt = Date.now();
  while (Date.now() < deadline) {
    try {
      const ready = await world.readyCounts();
      const mgmt = await Promise.all(names.map((n) => world.managementQueue(n)));
      const busy = names.some((n) => ready[n]! > 0) || mgmt.some((m) => m.messages > 0 || m.unacked > 0);
      last = names.map((n, i) => `${n}: ready=${ready[n]} mgmt=${mgmt[i]!.messages}/${mgmt[i]!.unacked}`).join(", ");
      if (stalledMs !== undefined) {
        // Progress is the consumers' count of processed attempts. The queues' depth is no measure of
        // it: early in a drain most attempts send their message round again, and right after a
        // large publish the management API's counts and the broker's own ready count disagreed by
        // up to 70,000 messages for two minutes (scenario 7, 2 December), so a minimum taken from
        // either was not reached again for two minutes while attempts went on.
        const done = await attemptsDone(world);
        if (done > attempts) [attempts, progressAt] = [done, Date.now()];
        else if (Date.now() - progressAt >= stalledMs)
          throw new StalledError(`no attempt processed for ${stalledMs} ms (${attempts} so far); last reading: ${last}`);
      }
      if (busy) quietSince = undefined;
      else {
        quietSince ??= Date.now();
        if (Date.now() - quietSince >= quietMs) return;
      }
    } catch (err) {
      if (err instanceof StalledError) throw err;
      quietSince = undefined;
      last = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`queues did not drain within ${timeoutMs} ms; last reading: ${last}`);
}

export interface DeadLetter {
  messageId: string | undefined;
  reason: string;
  body: Buffer;
}

/** Reads every message of the DLQ without removing it (unacked, requeued when the channel closes). */
export async function readDeadLetters(world: World, timeoutMs = 60_000): Promise<DeadLetter[]> {
  return world.withChannel(async (ch) => {
    const { messageCount } = await ch.checkQueue(world.topology.dlq);
    const out: DeadLetter[] = [];
    if (messageCount === 0) return out;
    // A quorum queue (a cluster's DLQ) caps an unlimited prefetch at 2,000: ask for them all.
    await ch.prefetch(messageCount <= 65_535 ? messageCount : 0);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`read ${out.length} of ${messageCount} dead letters in time`)), timeoutMs);
      void ch.consume(
        world.topology.dlq,
        (m: ConsumeMessage | null) => {
          if (!m) return;
          out.push({
            messageId: typeof m.properties.messageId === "string" ? m.properties.messageId : undefined,
            reason: String(m.properties.headers?.[HEADERS.deadReason] ?? ""),
            body: m.content,
          });
          if (out.length >= messageCount) {
            clearTimeout(timer);
            resolve();
          }
        },
        { noAck: false },
      );
    });
    return out;
  });
}

export interface LogRow {
  messageId: string;
  round: number;
  attempt: number;
  status: string;
  system: System | null;
  orderId: number | null;
}

/**
 * Every attempt-log document of the scenario. FerretDB serves whole-collection
 * reads at ~6k documents/s through the wire protocol, so on FerretDB the same
 * documents are read from its PostgreSQL backend table (found through FerretDB's
 * own metadata table); on a real mongod they are read with find().
 */
export async function readLog(world: World): Promise<LogRow[]> {
  const database = world.config.mongo.database;
  const backend = new pg.Client({ connectionString: URLS.admin.replace(/\/postgres$/, "/ferretdb") });
  const table = await backend
    .connect()
    .then(() =>
      backend.query<{ table: string }>(
        `select _jsonb->>'table' as table from "${database}"._ferretdb_database_metadata where _jsonb->>'_id' = $1`,
        ["message_logs"],
      ),
    )
    .then((r) => r.rows[0]?.table)
    .catch(() => undefined);
  try {
    if (table) {
      const { rows } = await backend.query<LogRow>(
        `select _jsonb->>'messageId' as "messageId", (_jsonb->>'round')::int as round, (_jsonb->>'attempt')::int as attempt,
                _jsonb->>'status' as status, _jsonb->>'system' as system, (_jsonb->>'orderId')::int as "orderId"
         from "${database}"."${table}"`,
      );
      return rows;
    }
  } finally {
    await backend.end().catch(() => undefined);
  }
  return world.mongo
    .db(database)
    .collection<LogRow>("message_logs")
    .find({}, { projection: { _id: 0, messageId: 1, round: 1, attempt: 1, status: 1, system: 1, orderId: 1 } })
    .toArray();
}

export interface InvariantResult {
  orders: number;
  trueOrders: number;
  falseOrders: number;
  endputRows: number;
  deadLetters: number;
  rejected: DeadLetter[];
  logDocuments: number;
  /** True orders missing from endput + false orders missing from the DLQ + attempt-log entries missing (at least). */
  lost: number;
  lostLogEntries: number;
  /** Extra endput rows + extra DLQ copies + repeated (messageId, round, attempt) log documents. */
  duplicated: number;
  /** Every violation, described (the first few of each kind). */
  problems: string[];
}

const MAX_LISTED = 5;

function noteAll(problems: string[], label: string, items: string[]): void {
  if (items.length === 0) return;
  problems.push(`${label}: ${items.length} (e.g. ${items.slice(0, MAX_LISTED).join(", ")})`);
}

export interface SourceOrder {
  key: string;
  system: System;
  id: number;
  check: boolean;
}

/** Source orders of both systems, keyed by message id; each cursor must be at its system's highest id. */
async function readOrders(world: World, problems: string[]): Promise<Map<string, SourceOrder>> {
  const orders = new Map<string, SourceOrder>();
  for (const system of SYSTEMS) {
    const { rows } = await world.sources[system].query<{ id: number; security_check: boolean }>(
      "select id, security_check from orders order by id",
    );
    for (const r of rows)
      orders.set(orderMessageId(system, r.id), { key: `${system}:${r.id}`, system, id: r.id, check: r.security_check });
    const max = rows.length ? rows[rows.length - 1]!.id : 0;
    const cursor = await world.cursor(system);
    if (cursor !== max) problems.push(`${system} cursor is ${cursor}, highest id is ${max}`);
  }
  return orders;
}

const extraCopies = (counts: Map<string, number>) => [...counts.values()].reduce((n, c) => n + c - 1, 0);

/** The sink: exactly the true orders. */
async function checkEndput(world: World, trueKeys: Set<string>, problems: string[]) {
  const { rows: sunk } = await world.endput.query<{ k: string; attempts: number; message_id: string }>(
    "select source_system::text || ':' || source_order_id as k, attempts, message_id::text from orders",
  );
  const sunkCount = new Map<string, number>();
  for (const r of sunk) sunkCount.set(r.k, (sunkCount.get(r.k) ?? 0) + 1);
  const missing = [...trueKeys].filter((k) => !sunkCount.has(k));
  noteAll(problems, "true orders missing from endput", missing);
  noteAll(
    problems,
    "endput rows duplicated",
    [...sunkCount].filter(([, n]) => n > 1).map(([k, n]) => `${k} x${n}`),
  );
  noteAll(
    problems,
    "endput rows that are not true orders",
    [...sunkCount.keys()].filter((k) => !trueKeys.has(k)),
  );
  return { rows: sunk.length, missing: missing.length, duplicated: extraCopies(sunkCount) };
}

/** The DLQ: every false order once, plus the REJECTED ones. */
async function checkDeadLetters(
  world: World,
  orders: Map<string, SourceOrder>,
  falseKeys: Set<string>,
  expectedRejected: number,
  problems: string[],
) {
  const dead = await readDeadLetters(world);
  const deadCount = new Map<string, number>();
  const rejected: DeadLetter[] = [];
  const unexpectedDead: string[] = [];
  for (const d of dead) {
    if (d.reason.startsWith("rejected")) {
      rejected.push(d);
      continue;
    }
    const o = d.messageId ? orders.get(d.messageId) : undefined;
    if (!o) {
      unexpectedDead.push(`${d.messageId} (${d.reason})`);
      continue;
    }
    deadCount.set(o.key, (deadCount.get(o.key) ?? 0) + 1);
    if (d.reason !== "max-attempts") unexpectedDead.push(`${o.key} (${d.reason})`);
  }
  const missing = [...falseKeys].filter((k) => !deadCount.has(k));
  noteAll(problems, "false orders missing from the DLQ", missing);
  noteAll(
    problems,
    "false orders in the DLQ more than once",
    [...deadCount].filter(([, n]) => n > 1).map(([k, n]) => `${k} x${n}`),
  );
  noteAll(
    problems,
    "true orders in the DLQ",
    [...deadCount.keys()].filter((k) => !falseKeys.has(k)),
  );
  noteAll(problems, "unexpected DLQ messages", unexpectedDead);
  if (rejected.length !== expectedRejected)
    problems.push(`REJECTED messages in the DLQ: ${rejected.length}, expected ${expectedRejected}`);
  return { count: dead.length, rejected, missing: missing.length, duplicated: extraCopies(deadCount) };
}

/** What is wrong with one order's round-0 history (its log documents, in any order). */
function judgeHistory(o: SourceOrder, history: LogRow[], maxAttempts: number) {
  const seen = new Map<number, string[]>();
  for (const h of [...history].sort((a, b) => a.attempt - b.attempt))
    seen.set(h.attempt, [...(seen.get(h.attempt) ?? []), h.status]);
  const repeated: string[] = [];
  let repeatedCount = 0;
  for (const [attempt, statuses] of seen) {
    if (statuses.length > 1) {
      repeatedCount += statuses.length - 1;
      repeated.push(`${o.key} attempt ${attempt}: ${statuses.join("+")}`);
    }
  }
  const attempts = [...seen.keys()];
  const n = attempts.length;
  const last = seen.get(attempts[n - 1]!)!;
  const earlier = attempts.slice(0, -1).flatMap((a) => seen.get(a)!);
  const terminal = o.check ? "SUCCEEDED" : "DEAD_LETTERED";
  const okEnd =
    last.includes(terminal) && earlier.every((s) => s === "RETRY_SCHEDULED") && (o.check ? n <= maxAttempts : n === maxAttempts);
  return {
    repeated,
    repeatedCount,
    gap: attempts.some((a, i) => a !== i + 1) ? `${o.key} [${attempts.join(",")}]` : undefined,
    // Entries missing below the highest attempt seen, and the terminal one if it never came.
    missing: attempts[n - 1]! - n + (last.includes(terminal) ? 0 : 1),
    badEnd: okEnd ? undefined : `${o.key} ${attempts.map((a) => `${a}:${seen.get(a)!.join("+")}`).join(" ")}`,
  };
}

/** The attempt log: every order's history complete, nothing repeated, nothing unknown. */
export function checkHistories(
  docs: LogRow[],
  orders: Map<string, SourceOrder>,
  expectedRejected: number,
  maxAttempts: number,
  problems: string[],
) {
  const byMessage = new Map<string, LogRow[]>();
  let rejectedDocs = 0;
  for (const d of docs) {
    if (d.status === "REJECTED") rejectedDocs++;
    else byMessage.set(d.messageId, [...(byMessage.get(d.messageId) ?? []), d]);
  }
  if (rejectedDocs !== expectedRejected) problems.push(`REJECTED log documents: ${rejectedDocs}, expected ${expectedRejected}`);
  const found = { noHistory: [] as string[], repeated: [] as string[], gaps: [] as string[], badEnd: [] as string[] };
  let repeatedCount = 0;
  let missingEntries = 0;
  for (const [messageId, o] of orders) {
    const history = (byMessage.get(messageId) ?? []).filter((d) => d.round === 0);
    byMessage.delete(messageId);
    if (history.length === 0) {
      found.noHistory.push(o.key);
      missingEntries++;
      continue;
    }
    const judged = judgeHistory(o, history, maxAttempts);
    found.repeated.push(...judged.repeated);
    repeatedCount += judged.repeatedCount;
    missingEntries += judged.missing;
    if (judged.gap) found.gaps.push(judged.gap);
    if (judged.badEnd) found.badEnd.push(judged.badEnd);
  }
  noteAll(problems, "orders without any logged attempt", found.noHistory);
  noteAll(problems, "repeated (messageId, round, attempt) log documents", found.repeated);
  noteAll(problems, "attempt histories with a gap", found.gaps);
  noteAll(problems, "attempt histories with a wrong ending or order", found.badEnd);
  noteAll(
    problems,
    "log documents for unknown messages",
    [...byMessage].map(([messageId, list]) => `${messageId} (${list.length} docs)`),
  );
  return { missingEntries, repeatedCount };
}

/** The counters: exactly one count per logged attempt, whatever was redelivered. */
async function checkCounters(world: World, docs: LogRow[], problems: string[]): Promise<void> {
  const counted: string[] = ["RETRY_SCHEDULED", "SUCCEEDED", "DEAD_LETTERED", "REJECTED"] satisfies ProcessingStatus[];
  const logged = new Map<string, number>();
  for (const d of docs) {
    if (!counted.includes(d.status)) continue;
    const field = counterField(d.system, d.status as ProcessingStatus);
    logged.set(field, (logged.get(field) ?? 0) + 1);
  }
  const counters = await world.redis.hgetall(counterKey(world.config));
  const drift = [...new Set([...logged.keys(), ...Object.keys(counters).filter((f) => counted.includes(f.split(":")[1]!))])]
    .filter((f) => Number(counters[f] ?? 0) !== (logged.get(f) ?? 0))
    .map((f) => `${f} counted ${counters[f] ?? 0}, logged ${logged.get(f) ?? 0}`);
  noteAll(problems, "Redis counters that differ from the attempt log", drift);
}

/**
 * Checks the invariant after the queues drained. `expectedRejected` is the number of
 * malformed messages the scenario sent (they must be in the DLQ as REJECTED and logged once).
 */
export async function checkInvariant(world: World, opts: { expectedRejected?: number } = {}): Promise<InvariantResult> {
  const problems: string[] = [];
  const expectedRejected = opts.expectedRejected ?? 0;
  const orders = await readOrders(world, problems);
  const keysWhere = (check: boolean) => new Set([...orders.values()].filter((o) => o.check === check).map((o) => o.key));
  const trueKeys = keysWhere(true);
  const falseKeys = keysWhere(false);
  const endput = await checkEndput(world, trueKeys, problems);
  const dead = await checkDeadLetters(world, orders, falseKeys, expectedRejected, problems);
  const docs = await readLog(world);
  const log = checkHistories(docs, orders, expectedRejected, world.config.retry.maxAttempts, problems);
  await checkCounters(world, docs, problems);
  return {
    orders: orders.size,
    trueOrders: trueKeys.size,
    falseOrders: falseKeys.size,
    endputRows: endput.rows,
    deadLetters: dead.count,
    rejected: dead.rejected,
    logDocuments: docs.length,
    lost: endput.missing + dead.missing + log.missingEntries,
    lostLogEntries: log.missingEntries,
    duplicated: endput.duplicated + dead.duplicated + log.repeatedCount,
    problems,
  };
}

/** Checks the invariant (timed in the report), records it and asserts nothing was lost or duplicated. */
export async function expectInvariantHolds(world: World, report: ScenarioReport): Promise<InvariantResult> {
  const result = await report.time("invariant", () => checkInvariant(world));
  report.invariant(result);
  expect(result.problems).toEqual([]);
  expect(result.lost).toBe(0);
  expect(result.duplicated).toBe(0);
  return result;
}
