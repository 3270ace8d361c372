// Scenario 6: hostile input at both doors. Malformed AMQP deliveries end in the
// DLQ as REJECTED (logged once, with a reason) while valid orders keep flowing;
// invalid GraphQL requests get a 4xx or a GraphQL error, never a 5xx, and the
// gateway keeps serving.

import { afterAll, describe, expect, it } from "vitest";

import { CURSORS } from "../../gateway/client/operations.ts";
import { gqlOn } from "../typed-gql.ts";
import { hostileMessages, hostileRequests } from "./support/hostile.ts";
import { checkInvariant, readLog, waitDrained } from "./support/invariant.ts";
import { publishAll, seed } from "./support/ops.ts";
import { readiness } from "./support/processes.ts";
import { startReport } from "./support/report.ts";
import { type Answer, send } from "./support/send.ts";
import { createWorld, type World } from "./support/world.ts";

const MALFORMED = 1_200;
const REQUESTS = 1_200;
const MAX_MESSAGE_BYTES = 4096;
const MAX_BODY_BYTES = 1024 * 1024;
const VALID = { SYSTEM1: 2_000, SYSTEM2: 1_000 } as const;

let world: World | undefined;
afterAll(async () => world?.cleanup());

describe("6. hostile input", () => {
  it("rejects malformed deliveries to the DLQ and invalid GraphQL requests with 4xx/GraphQL errors", async () => {
    const report = startReport("6", "hostile input");
    world = await createWorld("s6", {
      MAX_MESSAGE_BYTES: String(MAX_MESSAGE_BYTES),
      GATEWAY_MAX_BODY_BYTES: String(MAX_BODY_BYTES),
    });
    const w = world;
    const gateway = await w.startGateway();
    const consumer = await w.startConsumer();
    await seed(w, "SYSTEM1", VALID.SYSTEM1);
    await seed(w, "SYSTEM2", VALID.SYSTEM2);
    report.set({
      orders: VALID.SYSTEM1 + VALID.SYSTEM2,
      faults: `${MALFORMED} malformed AMQP msgs, ${REQUESTS} invalid GraphQL reqs`,
    });

    // Malformed deliveries interleaved with valid traffic.
    const messages = hostileMessages(MALFORMED, MAX_MESSAGE_BYTES);
    const [published1] = await Promise.all([publishAll(w, "SYSTEM1"), w.publishRaw(messages.slice(0, MALFORMED / 2))]);
    const [published2] = await Promise.all([publishAll(w, "SYSTEM2"), w.publishRaw(messages.slice(MALFORMED / 2))]);
    expect([published1, published2]).toEqual([VALID.SYSTEM1, VALID.SYSTEM2]);

    // Invalid GraphQL requests, eight at a time, while the consumer works.
    const requests = hostileRequests(REQUESTS, MAX_BODY_BYTES);
    const answers: Answer[] = [];
    const failures: string[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (next < requests.length) {
          const r = requests[next++]!;
          try {
            answers.push(await send(gateway.port, r, { timeoutMs: 60_000 }));
          } catch (err) {
            failures.push(`${r.kind}: ${(err as Error).message}`);
          }
        }
      }),
    );
    const byKind: Record<string, Record<string, number>> = {};
    for (const a of answers) {
      const k = (byKind[a.kind] ??= {});
      k[String(a.status)] = (k[String(a.status)] ?? 0) + 1;
    }
    const serverErrors = answers.filter((a) => a.status >= 500);
    const accepted = answers.filter((a) => a.status < 400 && a.codes.length === 0);
    const internal = answers.filter((a) => a.codes.includes("INTERNAL_SERVER_ERROR"));
    // A few samples of each kind.
    const show = (list: Answer[]) => {
      const perKind = new Map<string, string[]>();
      for (const a of list) {
        const l = perKind.get(a.kind) ?? [];
        if (l.length < 2) perKind.set(a.kind, [...l, `${a.status} ${a.snippet}`]);
      }
      return Object.fromEntries(perKind);
    };
    report.detail("graphql", {
      sent: requests.length,
      statusesByKind: byKind,
      serverErrors: serverErrors.length,
      acceptedWithoutError: accepted.length,
      internalErrors: internal.length,
      transportFailures: failures.length,
      samples: {
        serverErrors: show(serverErrors),
        accepted: show(accepted),
        internal: show(internal),
        failures: failures.slice(0, 5),
      },
    });

    // The gateway still serves (its /readyz is recorded, not asserted: see scenario 7).
    const health = await fetch(`http://127.0.0.1:${gateway.port}/healthz`);
    expect(health.status).toBe(200);
    report.detail("gatewayReadinessAfter", await readiness(gateway));
    const ok = await gqlOn(w, CURSORS);
    expect(ok.errors).toBeUndefined();
    expect(ok.data?.cursors).toHaveLength(2);
    expect(gateway.alive()).toBe(true);

    // The consumer: every valid order handled, every malformed delivery REJECTED exactly once.
    await report.time("drain", () => waitDrained(w));
    expect(consumer.alive()).toBe(true);
    const result = await report.time("invariant", () => checkInvariant(w, { expectedRejected: MALFORMED }));
    report.invariant(result);
    const tracked = messages.filter((m) => m.messageId).map((m) => m.messageId!);
    const deadIds = result.rejected.map((d) => d.messageId);
    const deadOnce = tracked.filter((id) => deadIds.filter((d) => d === id).length === 1);
    const logged = (await readLog(w)).filter((d) => d.status === "REJECTED").map((d) => d.messageId);
    const loggedOnce = new Set(tracked.filter((id) => logged.filter((l) => l === id).length === 1));
    const reasons = result.rejected.map((d) => d.reason);
    report.detail("amqp", {
      sent: MALFORMED,
      rejectedInDlq: result.rejected.length,
      trackedInDlqOnce: deadOnce.length,
      trackedLoggedOnce: loggedOnce.size,
      reasons: [...new Set(reasons.map((r) => r.replace(/\d+/g, "N").slice(0, 70)))].slice(0, 12),
    });

    const list = (l: Answer[]) => l.map((a) => `${a.kind} ${a.status} ${a.snippet}`);
    const gatewayViolations = {
      serverErrors: list(serverErrors),
      acceptedWithoutError: list(accepted),
      internalErrors: list(internal),
      transportFailures: failures,
    };
    for (const [k, v] of Object.entries(gatewayViolations))
      if (v.length) report.set({ problems: [...report.row.problems, `GraphQL ${k}: ${v.length} (e.g. ${v[0]!.slice(0, 120)})`] });
    expect(gatewayViolations).toEqual({ serverErrors: [], acceptedWithoutError: [], internalErrors: [], transportFailures: [] });
    expect(answers.length + failures.length).toBe(REQUESTS);

    expect(result.rejected).toHaveLength(MALFORMED);
    expect(deadOnce).toHaveLength(tracked.length);
    expect(loggedOnce.size).toBe(tracked.length);
    for (const r of reasons) expect(r).toMatch(/^rejected: .+/);
    for (const pattern of [
      /not valid JSON/,
      /order contract/,
      /exceeds the 4096-byte maximum/,
      /missing header x-attempt/,
      /x-attempt is not a valid count/,
      /x-round is not a valid count/,
    ])
      expect(
        reasons.some((r) => pattern.test(r)),
        String(pattern),
      ).toBe(true);
    expect(result.problems).toEqual([]);
    expect(result.lost).toBe(0);
    expect(result.duplicated).toBe(0);
    report.pass();
  });
});
