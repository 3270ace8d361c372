// Scenario 6b: hostile queries. While a seed mix drains, clients send requests that cost far
// more than they look (thousands of aliases, 500-row lists times aliases with history,
// thousands of directives, fragments that multiply, batched arrays, a megabyte of tokens as JSON
// and as an application/graphql body, JSON nested a few hundred thousand levels deep)
// alongside normal polling clients, one at a time, then a hundred of the megabyte ones at once,
// a client that holds every connection it may and keeps opening more, and a client that
// subscribes to the live events and never reads them.
// Every hostile request is refused with a 4xx or a coded error (the ones sent one at a time and
// the connections past the limit within 100 ms, see REFUSED_WITHIN_MS), the gateway never
// restarts, normal clients see no errors and their p99 stays within three times the quiet one's,
// and nothing is lost or duplicated.
import { print } from "graphql";
import { afterAll, describe, expect, it } from "vitest";

import { SYSTEMS } from "../../common/contract.ts";
import { graphql } from "../../gateway/client/graphql.ts";
import { orderMessageId } from "../../gateway/src/services/message-id.ts";
import { idleConnection } from "../support/idle-connection.ts";
import { between, threadTimes } from "../support/scheduling.ts";
import { stalledSubscriber } from "../support/stalled-subscriber.ts";
import { gqlOn } from "../typed-gql.ts";
import { COSTLY_KINDS, costlyRequests, type HostileRequest } from "./support/hostile.ts";
import { checkInvariant, waitDrained } from "./support/invariant.ts";
import { pendingWork, publishAll, seed, sleep } from "./support/ops.ts";
import { runRemoteClient } from "./support/remote-client.ts";
import { startReport } from "./support/report.ts";
import { type Answer, send, sendTimed, type TimedAnswer } from "./support/send.ts";
import { createWorld, type World } from "./support/world.ts";

const PER_KIND = 200;
const PER_SYSTEM = 15_000;
const NORMAL_CLIENTS = 4;
const QUIET_MS = 5_000;
// Every refusal within this, the connections refused past a client's limit too. The gateway
// shares the two cores with the draining pipeline; it runs above the stores' and the consumer's
// CPU priority (GATEWAY_NICE, CONSUMER_NICE), and the costly requests come from a process that
// stands for a client on another host (support/remote-client.ts). Even so the kernel keeps its
// main thread off a CPU now and then: the slowest refusals of a run spent 50 to 145 ms of their
// 65 to 190 waiting for one, while other processes ran (README, Limits and costs). So each costly request's time is judged
// without the time the gateway's main thread waited for a CPU meanwhile (its schedstat), and 99 %
// of each kind must also be within it as the client sees it, waits included.
const REFUSED_WITHIN_MS = 100;
// Scaled by how much slower than usual this run's machine is: the normal clients' median in the
// quiet phase against its usual value on this 2-core machine (23 to 31 ms in six runs of
// 2 December). The host is shared: on 1 December the same quiet median went from 44 to 177 ms
// between runs an hour apart, with no change to the gateway.
const QUIET_P50_USUAL_MS = 30;
// Then megabyte requests all at once: 100 MB in flight at the gateway together.
const FLOOD = 100;
const MAX_BODY_BYTES = 1024 * 1024;
// Then a client on another address holds every connection it may and sends PER_KIND requests on
// new ones (every loopback address reaches the gateway).
const CLIENT_CONNECTIONS = 256;
const GREEDY_CLIENT = "127.0.0.2";

// What the dashboard polls: the overview, the reconciliation, one message's history.
const NORMAL = [
  {
    name: "overview",
    query: graphql("{ cursors { system lastPublishedId pending } system1: orders(system: SYSTEM1, first: 1) { totalCount } }"),
  },
  {
    name: "pipelineStats",
    query: graphql("{ pipelineStats { queues { name messages } systems { system inFlight endputRows } } }"),
  },
  {
    name: "messageHistory",
    query: graphql("query ($id: ID!) { messageHistory(messageId: $id) { attempt status processedAt } }"),
  },
].map((op) => ({ name: op.name, query: print(op.query) }));

let world: World | undefined;
let stop = false;
afterAll(async () => {
  stop = true;
  await world?.cleanup();
});

/** Opens `count` connections from `localAddress` that send nothing; `release` closes them. */
async function holdConnections(port: number, localAddress: string, count: number) {
  const sockets = await Promise.all(Array.from({ length: count }, () => idleConnection(port, localAddress)));
  return {
    /** How many the gateway has not closed. */
    open: () => sockets.filter((s) => !s.destroyed && !s.readableEnded).length,
    release: () => sockets.forEach((s) => s.destroy()),
  };
}

/** The gateway's own view: event-loop delay since the last scrape, GC pauses by duration bucket. */
async function gatewayLoad(port: number) {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const value = (name: string) => {
    const line = text.split("\n").find((l) => l.startsWith(name));
    return line ? Number(line.split(" ").at(-1)) : NaN;
  };
  const gc = (le: string) =>
    text
      .split("\n")
      .filter((l) => l.startsWith("tentativa_gateway_nodejs_gc_duration_seconds_bucket") && l.includes(`le="${le}"`))
      .reduce((sum, l) => sum + Number(l.split(" ").at(-1)), 0);
  return {
    loopMaxMs: Math.round(value("tentativa_gateway_nodejs_eventloop_lag_max_seconds") * 1000),
    loopP99Ms: Math.round(value("tentativa_gateway_nodejs_eventloop_lag_p99_seconds") * 1000),
    gcTotal: gc("+Inf"),
    gcOver10ms: gc("+Inf") - gc("0.01"),
    gcOver100ms: gc("+Inf") - gc("0.1"),
  };
}

function percentiles(values: number[]) {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (p: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]! : 0);
  const r = (n: number) => Math.round(n * 10) / 10;
  return { count: sorted.length, p50: r(at(50)), p99: r(at(99)), max: r(sorted.at(-1) ?? 0) };
}

/**
 * A client that subscribes to every processing event over graphql-ws and then stops reading
 * its socket: the events pile up for it at the pipeline's rate. The gateway ends it either way it
 * may: SUBSCRIBER_TOO_SLOW once its queue is full (seen only if the client reads again before),
 * or the WebSocket keep-alive closing a connection that answers no ping (12 to 24 s).
 */
async function stalledEventsSubscriber(port: number) {
  const query = "subscription { processingEvents { messageId system orderId attempt round status error at } }";
  const stalled = await stalledSubscriber(port, "stalled", query);
  return {
    /** Reads what was sent meanwhile; resolves with how the subscription ended ("open" if it had not after `ms`). */
    async resume(ms: number) {
      stalled.resume();
      const ended = () => stalled.closed() || stalled.completed();
      for (const deadline = Date.now() + ms; Date.now() < deadline && !ended();) await sleep(100);
      const mine = stalled.frames();
      const events = mine.filter((f) => f.type === "next" && !f.payload?.errors).length;
      const code = mine.find((f) => f.payload?.errors)?.payload?.errors?.[0]?.extensions?.code;
      const closed = stalled.closed();
      stalled.close();
      return { events, ended: code ?? (closed ? "connection closed by the gateway" : ended() ? "complete" : "open") };
    },
  };
}

describe("6b. hostile queries", () => {
  it(`refuses ${PER_KIND} costly requests of each kind fast while normal clients keep their latency`, async () => {
    const report = startReport("6b", "hostile queries");
    world = await createWorld("s6b", {
      GATEWAY_MAX_BODY_BYTES: String(MAX_BODY_BYTES),
      GATEWAY_CLIENT_CONNECTIONS: String(CLIENT_CONNECTIONS),
    });
    const w = world;
    const gateway = await w.startGateway();
    const consumer = await w.startConsumer();
    await Promise.all(SYSTEMS.map((s) => seed(w, s, PER_SYSTEM)));
    // Subscribed before the run, so that every event of it is sent its way.
    const stalled = await stalledEventsSubscriber(gateway.port);
    report.set({
      orders: 2 * PER_SYSTEM,
      faults: `${PER_KIND} x ${COSTLY_KINDS.length} costly GraphQL reqs, ${NORMAL_CLIENTS} pollers, ${FLOOD} MB at once, ${CLIENT_CONNECTIONS}+${PER_KIND} connections, a stalled subscriber`,
    });

    // Normal clients poll throughout; each latency is filed under its phase, when it started and
    // ended in the same one (a request that the flood overtook measures the flood).
    let phase: "quiet" | "hostile" | "flood" | "connections" | "after" = "quiet";
    const latency = { quiet: [] as number[], hostile: [] as number[] };
    const normalErrors: string[] = [];
    const pollers = Array.from({ length: NORMAL_CLIENTS }, async (_, c) => {
      for (let i = c; !stop; i++) {
        const op = NORMAL[i % NORMAL.length]!;
        const started = phase;
        const t0 = performance.now();
        try {
          const id = orderMessageId(SYSTEMS[i % 2]!, 1 + (i % PER_SYSTEM));
          const r = await w.gql(op.query, op.name === "messageHistory" ? { id } : undefined, 30_000);
          if (r.status !== 200 || r.errors) normalErrors.push(`${op.name} ${r.status} ${JSON.stringify(r.errors).slice(0, 200)}`);
        } catch (err) {
          normalErrors.push(`${op.name} ${(err as Error).message}`);
        }
        if (started === phase && (started === "quiet" || started === "hostile")) latency[started].push(performance.now() - t0);
        await sleep(250);
      }
    });

    // The seed mix drains while this runs: publish both systems, then a quiet phase, then the hostile one.
    const published = await Promise.all(SYSTEMS.map((s) => publishAll(w, s)));
    expect(published).toEqual([PER_SYSTEM, PER_SYSTEM]);
    await sleep(QUIET_MS);
    const loadBefore = await gatewayLoad(gateway.port);
    phase = "hostile";
    const pendingWhenHostileStarts = await pendingWork(w);
    const gatewayCpuBefore = threadTimes(gateway.pid);
    const t0 = Date.now();
    const sender = await runRemoteClient(gateway.port, PER_KIND, MAX_BODY_BYTES, gateway.pid);
    const { answers, failures } = sender;
    const hostileSeconds = (Date.now() - t0) / 1000;
    // What a refusal waits for besides the gateway's own work: its main thread's turn on a CPU.
    const gatewayHostile = between(gatewayCpuBefore, threadTimes(gateway.pid));
    const gatewayScheduling = gatewayHostile && {
      runMsPerSecond: Math.round(gatewayHostile.runMs / hostileSeconds),
      waitMsPerSecond: Math.round(gatewayHostile.waitMs / hostileSeconds),
    };

    // The same megabyte of tokens from FLOOD clients at once: each is refused, none takes the
    // gateway's heap with it. Latency is not the question here: 100 MB arrive at once.
    phase = "flood";
    const floodRequests: HostileRequest[] = [];
    for (const r of costlyRequests(FLOOD, MAX_BODY_BYTES, 9)) if (r.kind === "megabyte-of-tokens") floodRequests.push(r);
    const tFlood = Date.now();
    const flood = await Promise.all(
      floodRequests.map((r) => send(gateway.port, r).catch((err: Error) => `${r.kind}: ${err.message}`)),
    );
    const floodSeconds = (Date.now() - tFlood) / 1000;

    // A client holding every connection it may: each new one is refused, the others' are not.
    phase = "connections";
    const greedy = await holdConnections(gateway.port, GREEDY_CLIENT, CLIENT_CONNECTIONS);
    const overLimit: HostileRequest = {
      kind: "connection-past-the-limit",
      method: "POST",
      path: "/graphql",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ query: "{ __typename }" }),
    };
    const connectionAnswers: TimedAnswer[] = [];
    for (let i = 0; i < PER_KIND; i++)
      connectionAnswers.push(await sendTimed(gateway.port, overLimit, gateway.pid, { localAddress: GREEDY_CLIENT }));
    const greedyHeld = greedy.open();
    greedy.release();
    phase = "after";
    const loadAfter = await gatewayLoad(gateway.port);
    const pendingAfterHostile = await pendingWork(w);

    await report.time("drain", () => waitDrained(w));
    stop = true;
    await Promise.all(pollers);
    const stalledEnd = await stalled.resume(60_000);

    const refused = (a: Answer) => (a.status >= 400 && a.status < 500) || (a.status < 500 && a.codes.some((c) => c !== ""));
    const floodAnswers = flood.filter((a): a is Answer => typeof a !== "string");
    const floodFailures = flood.filter((a): a is string => typeof a === "string");
    const floodNotRefused = floodAnswers.filter((a) => !refused(a)).map((a) => `${a.status} ${a.snippet}`);
    const notRefused = answers.filter((a) => !refused(a));
    const slow = answers.filter((a) => a.ms >= REFUSED_WITHIN_MS);
    const quiet = percentiles(latency.quiet);
    const hostile = percentiles(latency.hostile);
    const slowdown = Math.max(1, quiet.p50 / QUIET_P50_USUAL_MS);
    const target = Math.round(REFUSED_WITHIN_MS * slowdown);
    // The gateway's part of a refusal: its time less what its main thread waited for a CPU (the
    // process's main thread, where its JavaScript runs); all of it where the kernel keeps no schedstat.
    const ownMs = (a: TimedAnswer) => a.ms - (a.gateway?.waitMs ?? 0);
    const overTarget = answers.filter((a) => ownMs(a) >= target);
    const byKind = Object.fromEntries(
      COSTLY_KINDS.map((kind) => {
        const mine = answers.filter((a) => a.kind === kind);
        const codes: Record<string, number> = {};
        for (const a of mine) {
          const key = `${a.status} ${a.codes[0] ?? ""}`.trim();
          codes[key] = (codes[key] ?? 0) + 1;
        }
        return [kind, { sent: mine.length, latencyMs: percentiles(mine.map((a) => a.ms)), answers: codes }];
      }),
    );
    report.detail("hostile", {
      sent: answers.length + failures.length,
      senderLoopMaxMs: sender.loopMaxMs,
      senderPriority: { nice: sender.nice, autogroup: sender.autogroup },
      seconds: hostileSeconds,
      byKind,
      notRefused: notRefused.slice(0, 5).map((a) => `${a.kind} ${a.status} ${a.snippet}`),
      slowest: [...answers]
        .sort((a, b) => b.ms - a.ms)
        .slice(0, 10)
        .map((a) => ({ kind: a.kind, ms: Math.round(a.ms), gateway: a.gateway, client: a.client })),
      slowdown: Math.round(slowdown * 100) / 100,
      targetMs: target,
      overTarget: overTarget.length,
      transportFailures: failures.slice(0, 5),
      pendingWhenStarted: pendingWhenHostileStarts,
      pendingWhenDone: pendingAfterHostile,
      gatewayLoad: { before: loadBefore, during: loadAfter },
      gatewayScheduling,
    });
    report.detail("flood", {
      sent: floodRequests.length,
      refused: floodAnswers.length - floodNotRefused.length,
      seconds: floodSeconds,
      latencyMs: percentiles(floodAnswers.map((a) => a.ms)),
      notRefused: floodNotRefused.slice(0, 5),
      transportFailures: floodFailures.slice(0, 5),
    });
    const connectionsNotRefused = connectionAnswers.filter((a) => a.status !== 429 || a.codes[0] !== "TOO_MANY_CONNECTIONS");
    report.detail("connections", {
      held: greedyHeld,
      sent: connectionAnswers.length,
      latencyMs: percentiles(connectionAnswers.map((a) => a.ms)),
      notRefused: connectionsNotRefused.slice(0, 5).map((a) => `${a.status} ${a.snippet}`),
    });
    report.detail("normalClients", { quiet, hostile, errors: normalErrors.length, errorSamples: normalErrors.slice(0, 5) });
    const fmt = (p: ReturnType<typeof percentiles>) => `p50 ${p.p50} ms, p99 ${p.p99} ms (n=${p.count})`;
    report.note(
      `work pending in the pipeline: ${pendingWhenHostileStarts} when the hostile requests began, ${pendingAfterHostile} when they ended`,
    );
    report.note(
      `refusals at or over ${REFUSED_WITHIN_MS} ms: ${slow.length} of ${answers.length} (max ${Math.round(Math.max(...answers.map((a) => a.ms)))} ms; the sender's own event loop stalled at most ${sender.loopMaxMs} ms)`,
    );
    report.note(
      `this run's target: ${target} ms (${REFUSED_WITHIN_MS} ms × ${slowdown.toFixed(2)}, the normal clients' quiet median of ${quiet.p50} ms against a usual ${QUIET_P50_USUAL_MS}); ${overTarget.length} of ${answers.length} at or over it without the gateway's waits for a CPU, ${answers.filter((a) => a.ms >= target).length} with them`,
    );
    if (gatewayScheduling)
      report.note(
        `the gateway's main thread, while the costly requests were sent: on a CPU ${gatewayScheduling.runMsPerSecond} ms and waiting for one ${gatewayScheduling.waitMsPerSecond} ms per second`,
      );
    report.note(`normal clients, quiet: ${fmt(quiet)}; under hostile traffic: ${fmt(hostile)}`);
    report.note(
      `${floodRequests.length} megabyte requests at once: ${floodAnswers.length - floodNotRefused.length} refused in ${floodSeconds} s, ${fmt(percentiles(floodAnswers.map((a) => a.ms)))}`,
    );
    report.note(
      `a client holding ${greedyHeld} connections: ${connectionAnswers.length - connectionsNotRefused.length} of ${connectionAnswers.length} more refused (429 TOO_MANY_CONNECTIONS), ${fmt(percentiles(connectionAnswers.map((a) => a.ms)))}`,
    );
    report.note(`stalled subscriber: ${stalledEnd.ended} after ${stalledEnd.events} events had reached its socket`);
    for (const kind of COSTLY_KINDS) {
      const k = byKind[kind]!;
      report.note(`${kind}: ${k.sent} refused, ${fmt(k.latencyMs)}, ${JSON.stringify(k.answers)}`);
    }

    // The gateway never restarted and still serves; the consumer never waited on it.
    expect(gateway.alive()).toBe(true);
    expect(consumer.alive()).toBe(true);
    expect((await gqlOn(w, graphql("{ cursors { system } }"))).errors).toBeUndefined();

    const result = await report.time("invariant", () => checkInvariant(w));
    report.invariant(result);

    // The hostile requests ran while the seed mix was still draining.
    expect(pendingWhenHostileStarts).toBeGreaterThan(0);
    expect(failures).toEqual([]);
    expect(answers).toHaveLength(PER_KIND * COSTLY_KINDS.length);
    expect(notRefused.map((a) => `${a.kind} ${a.status} ${a.snippet}`)).toEqual([]);
    expect(floodRequests).toHaveLength(FLOOD);
    expect(floodFailures).toEqual([]);
    expect(floodNotRefused).toEqual([]);
    expect(greedyHeld).toBe(CLIENT_CONNECTIONS);
    expect(connectionAnswers).toHaveLength(PER_KIND);
    expect(connectionsNotRefused.map((a) => `${a.status} ${a.snippet}`)).toEqual([]);
    const waited = (a: TimedAnswer) => `${Math.round(a.ms)} ms (${a.gateway?.waitMs ?? "?"} waiting for a CPU)`;
    expect(connectionAnswers.filter((a) => ownMs(a) >= target).map(waited)).toEqual([]);
    expect(overTarget.map((a) => `${a.kind} ${waited(a)}`)).toEqual([]);
    // And as the client sees it, CPU waits included: 99 % of each kind within the target.
    expect(
      COSTLY_KINDS.filter((kind) => byKind[kind]!.latencyMs.p99 >= target).map(
        (kind) => `${kind} p99 ${byKind[kind]!.latencyMs.p99} ms`,
      ),
    ).toEqual([]);
    expect(normalErrors).toEqual([]);
    // The subscriber that never read was cut off; what piled up for it did not take the gateway's heap.
    expect(["SUBSCRIBER_TOO_SLOW", "connection closed by the gateway"]).toContain(stalledEnd.ended);
    expect(latency.quiet.length).toBeGreaterThan(20);
    expect(latency.hostile.length).toBeGreaterThan(20);
    // Normal clients keep their latency: their p99 under hostile traffic within three times the quiet one's.
    expect(hostile.p99).toBeLessThanOrEqual(3 * quiet.p99);
    expect(result.problems).toEqual([]);
    expect(result.lost).toBe(0);
    expect(result.duplicated).toBe(0);
    report.pass();
  }, 600_000);
});
