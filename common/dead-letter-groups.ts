// Dead-letter groups: the dead letters in the DLQ by (system, reason), kept in Redis so
// that an operator's overview never walks the queue.
//
// A group's reason is a stable classification of the x-dead-reason header the consumer
// writes: `max-attempts` for a message that failed every allowed attempt, and
// `rejected:<kind>` for one the consumer could not read, kind being one of REJECTION_KINDS
// (`other` for a text none of them names). A copy without the header (dead-lettered by the
// broker itself, a quorum primary's delivery limit) is `unknown`. The system is the
// message's source system, `UNKNOWN` for a rejected one (readable or not).
//
// One sorted set per group (member: message id, score: deadAt in ms) and one set naming the
// groups. The consumer adds a dead letter in the script that counts its attempt, so exactly
// once however often its batch is redelivered (common/events.ts); a redrive or a discard
// removes it once the broker has processed the ack of its copy. What the groups do not see: a
// dead letter the forwarder published twice (a confirm lost with a broker crash) is one member
// for two copies, and a gateway that dies between an ack and the removal leaves the member
// counted (an over-count: never a dead letter in the queue that no group shows). A removal takes
// out only an entry no newer than the copy that left, so a redriven message that fails again
// before the redrive's walk ends stays counted.
import type { Redis } from "ioredis";

import type { Config } from "./config.ts";
import type { System } from "./contract.ts";

export const MAX_ATTEMPTS_REASON = "max-attempts";
export const UNKNOWN_REASON = "unknown";

/** How a rejection's error text (InvalidMessageError and decide.ts) classifies. */
const REJECTION_KINDS: readonly [kind: string, pattern: RegExp][] = [
  ["too-large", /^message of \d+ bytes exceeds/],
  ["bad-headers", /^(missing header |header \S+ is not a valid count)/],
  ["unsupported-contract", /^(contract version|header x-contract-version)/],
  ["not-json", /^body is not valid JSON/],
  ["contract-mismatch", /^body does not match the order contract/],
  ["unstorable", /NUL character/],
];

/** The group reason of a dead letter, from its x-dead-reason header (`rejected: <error>` for a rejection). */
export function groupReasonOf(deadReason: string | null | undefined): string {
  if (!deadReason) return UNKNOWN_REASON;
  if (deadReason === MAX_ATTEMPTS_REASON) return MAX_ATTEMPTS_REASON;
  const m = /^rejected(?::\s*(.*))?$/s.exec(deadReason);
  if (!m) return deadReason.startsWith("rejected:") ? deadReason : UNKNOWN_REASON;
  const text = m[1] ?? "";
  return `rejected:${REJECTION_KINDS.find(([, p]) => p.test(text))?.[0] ?? "other"}`;
}

export const isRejection = (reason: string) => reason.startsWith("rejected:");

/** Whether a group reason falls under a filter: the same reason, or a class of it (`rejected` covers `rejected:not-json`). */
export function reasonMatches(reason: string, filter: string): boolean {
  return reason === filter || reason.startsWith(`${filter}:`);
}

export type GroupSystem = System | "UNKNOWN";

export const groupName = (system: GroupSystem, reason: string) => `${system}:${reason}`;
/** The set of group names. */
export const deadLetterGroupsKey = (c: Config) => `${c.redis.prefix}:dead-letter-groups`;
/** One group's sorted set: message id -> deadAt (ms). */
export const deadLetterGroupKey = (c: Config, system: GroupSystem, reason: string) =>
  `${c.redis.prefix}:dead-letters:${groupName(system, reason)}`;

export interface DeadLetterGroup {
  system: System | null;
  reason: string;
  count: number;
  oldestDeadAt: Date;
  newestDeadAt: Date;
  sampleMessageId: string;
}

/** A group's system as the API shows it: null for the rejected messages no system could be read of. */
const shownSystem = (system: GroupSystem): System | null => (system === "UNKNOWN" ? null : system);

/** The groups named in the set of group names, sorted by name. */
async function groupNames(redis: Redis, config: Config): Promise<{ system: GroupSystem; reason: string }[]> {
  return (await redis.smembers(deadLetterGroupsKey(config))).sort().map((name) => {
    const i = name.indexOf(":");
    return { system: name.slice(0, i) as GroupSystem, reason: name.slice(i + 1) };
  });
}

/** A dead letter as a group counts it. */
export interface GroupMember {
  system: System | null;
  reason: string;
  messageId: string;
  deadAt: Date;
}

/** Every member of every group with its deadAt, one command per group in one pipeline. */
export async function readMembers(redis: Redis, config: Config): Promise<GroupMember[]> {
  const groups = await groupNames(redis, config);
  if (groups.length === 0) return [];
  const p = redis.pipeline();
  for (const g of groups) p.zrange(deadLetterGroupKey(config, g.system, g.reason), 0, -1, "WITHSCORES");
  const results = (await p.exec()) ?? [];
  return groups.flatMap((g, idx) => {
    const [err, value] = results[idx]!;
    if (err) throw err;
    const pairs = value as string[];
    const system = shownSystem(g.system);
    const members: GroupMember[] = [];
    for (let i = 0; i + 1 < pairs.length; i += 2)
      members.push({ system, reason: g.reason, messageId: pairs[i]!, deadAt: new Date(Number(pairs[i + 1])) });
    return members;
  });
}

/** Every group that holds a dead letter, largest first; three commands per group, in one pipeline. */
export async function readGroups(redis: Redis, config: Config, system?: System | null): Promise<DeadLetterGroup[]> {
  const wanted = (await groupNames(redis, config)).filter((g) => !system || g.system === system);
  if (wanted.length === 0) return [];
  const p = redis.pipeline();
  for (const g of wanted) {
    const key = deadLetterGroupKey(config, g.system, g.reason);
    p.zcard(key).zrange(key, 0, 0, "WITHSCORES").zrange(key, -1, -1, "WITHSCORES");
  }
  const results = (await p.exec()) ?? [];
  const groups: DeadLetterGroup[] = [];
  wanted.forEach((g, idx) => {
    const [count, first, last] = results.slice(idx * 3, idx * 3 + 3).map(([err, value]) => {
      if (err) throw err;
      return value;
    }) as [number, string[], string[]];
    if (Number(count) === 0 || first.length < 2 || last.length < 2) return;
    groups.push({
      system: shownSystem(g.system),
      reason: g.reason,
      count: Number(count),
      oldestDeadAt: new Date(Number(first[1])),
      newestDeadAt: new Date(Number(last[1])),
      sampleMessageId: first[0]!,
    });
  });
  return groups.sort((a, b) => b.count - a.count || a.oldestDeadAt.getTime() - b.oldestDeadAt.getTime());
}

/** The deadAt of the oldest dead letter in any group, or null when there is none. */
export async function oldestDeadAt(redis: Redis, config: Config): Promise<Date | null> {
  const groups = await readGroups(redis, config);
  if (groups.length === 0) return null;
  return new Date(Math.min(...groups.map((g) => g.oldestDeadAt.getTime())));
}

/**
 * Adds dead letters to their groups, each member only where it is missing (a member already there
 * keeps its deadAt); returns how many were added. For restoring the groups from the queue.
 */
export async function addToGroups(redis: Redis, config: Config, letters: GroupMember[]): Promise<number> {
  if (letters.length === 0) return 0;
  const p = redis.pipeline();
  for (const l of letters) {
    const system: GroupSystem = l.system ?? "UNKNOWN";
    p.zadd(deadLetterGroupKey(config, system, l.reason), "NX", l.deadAt.getTime(), l.messageId);
    p.sadd(deadLetterGroupsKey(config), groupName(system, l.reason));
  }
  const results = (await p.exec()) ?? [];
  let added = 0;
  results.forEach(([err, value], idx) => {
    if (err) throw err;
    if (idx % 2 === 0) added += Number(value);
  });
  return added;
}

// Removes each member unless a later dead-lettering of the message re-added it (its score is past
// the removed copy's deadAt: a redriven message that failed again before the walk finished); a
// group left empty leaves the set of names (unless a dead letter came in meanwhile).
const REMOVE_SCRIPT = `
for i = 2, #KEYS do
  local member, group, upTo = ARGV[3 * i - 5], ARGV[3 * i - 4], ARGV[3 * i - 3]
  local score = redis.call('ZSCORE', KEYS[i], member)
  if score and (upTo == '' or tonumber(score) <= tonumber(upTo)) then redis.call('ZREM', KEYS[i], member) end
  if redis.call('ZCARD', KEYS[i]) == 0 then redis.call('SREM', KEYS[1], group) end
end
return #KEYS - 1`;

/**
 * Takes dead letters that left the DLQ (redriven or discarded) out of their groups: the entry of
 * each, as long as it is not newer than the copy that left (`deadAt`; without one, whatever it is).
 */
export async function removeFromGroups(
  redis: Redis,
  config: Config,
  letters: { system: System | null; reason: string; messageId: string; deadAt: Date | null }[],
): Promise<void> {
  if (letters.length === 0) return;
  const keys = [deadLetterGroupsKey(config)];
  const argv: string[] = [];
  for (const l of letters) {
    const system: GroupSystem = l.system ?? "UNKNOWN";
    keys.push(deadLetterGroupKey(config, system, l.reason));
    const upTo = l.deadAt && !Number.isNaN(l.deadAt.getTime()) ? String(l.deadAt.getTime()) : "";
    argv.push(l.messageId, groupName(system, l.reason), upTo);
  }
  await redis.eval(REMOVE_SCRIPT, keys.length, ...keys, ...argv);
}
