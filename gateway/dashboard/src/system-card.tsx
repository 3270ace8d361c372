// One source system: its orders and cursor, the seed and publish actions, and
// the live counters and throughput of its messages.
import { useState } from "preact/hooks";

import { errorText } from "./api.ts";
import { refreshNow, useServices } from "./context.ts";
import { fmtInt } from "./format.ts";
import { BUCKET_MS, COUNTED, type LiveModel, throughput, WINDOW_BUCKETS } from "./live.ts";
import { type Overview, PUBLISH, SEED, type System, type SystemStats } from "./operations.ts";
import { Sparkline } from "./sparkline.tsx";
import { StatusBadge } from "./status-badge.tsx";
import type { Polled } from "./use-poll.ts";

const MAX_SEED = 100_000;

export function SystemCard(props: {
  system: System;
  overview: Polled<Overview>;
  stats: Polled<{ systems: SystemStats[] }>;
  live: LiveModel;
}) {
  const { system, overview, stats, live } = props;
  const cursor = overview.data?.cursors.find((c) => c.system === system);
  const orders = system === "SYSTEM1" ? overview.data?.system1.totalCount : overview.data?.system2.totalCount;

  return (
    <section class="card system-card" aria-label={system}>
      <header class="card-header">
        <h2>{system}</h2>
        {overview.error && <span class="muted">stale</span>}
      </header>
      {overview.error && (
        <p class="panel-error" role="alert">
          {overview.error}
        </p>
      )}
      <dl class="figures">
        <Figure label="Orders in source" value={orders} testId="orders" />
        <Figure label="Cursor" value={cursor?.lastPublishedId} testId="cursor" />
        <Figure label="Pending" value={cursor?.pending} testId="pending" />
      </dl>
      <SystemActions system={system} />
      <h3>Pipeline</h3>
      <PipelineFigures system={system} stats={stats} />
      <h3>Live, since this page opened</h3>
      <LiveFigures system={system} live={live} />
    </section>
  );
}

/** Seed and publish, one at a time. */
function SystemActions({ system }: { system: System }) {
  const services = useServices();
  const { api, toasts } = services;
  const [count, setCount] = useState("50");
  const [busy, setBusy] = useState<"seed" | "publish" | null>(null);
  const seedCount = Number(count);
  const seedValid = Number.isInteger(seedCount) && seedCount >= 1 && seedCount <= MAX_SEED;

  async function act(kind: "seed" | "publish", run: () => Promise<string>) {
    setBusy(kind);
    try {
      toasts.notify("success", await run());
      refreshNow(services);
    } catch (err) {
      toasts.notify("error", `${system}: ${kind === "seed" ? "seeding" : "publishing"} failed: ${errorText(err)}`);
    } finally {
      setBusy(null);
    }
  }

  const seed = () =>
    act("seed", async () => {
      const { seedOrders: r } = await api.mutate(SEED, { system, count: seedCount });
      return r.inserted
        ? `${system}: seeded ${fmtInt(r.inserted)} orders (ids ${r.firstId}–${r.lastId})`
        : `${system}: nothing seeded`;
    });

  const publish = () =>
    act("publish", async () => {
      const { publishPending: r } = await api.mutate(PUBLISH, { system });
      const held = r.waitingOnTransactions ? "; newer rows wait on an open transaction" : "";
      return r.published
        ? `${system}: published ${fmtInt(r.published)} orders (ids ${r.fromId}–${r.toId})${held}`
        : `${system}: nothing to publish${held}`;
    });

  return (
    <div class="actions">
      <form
        class="seed-form"
        onSubmit={(e) => {
          e.preventDefault();
          if (seedValid && !busy) void seed();
        }}
      >
        <label>
          <span class="sr-only">Orders to seed</span>
          <input
            type="number"
            min={1}
            max={MAX_SEED}
            step={1}
            value={count}
            aria-label="Orders to seed"
            onInput={(e) => setCount(e.currentTarget.value)}
          />
        </label>
        <button type="submit" disabled={!seedValid || busy !== null}>
          {busy === "seed" ? "Seeding…" : "Seed"}
        </button>
      </form>
      <button type="button" class="primary" disabled={busy !== null} onClick={() => void publish()}>
        {busy === "publish" ? "Publishing…" : "Publish pending"}
      </button>
    </div>
  );
}

function PipelineFigures({ system, stats }: { system: System; stats: Polled<{ systems: SystemStats[] }> }) {
  const systemStats = stats.data?.systems.find((s) => s.system === system);
  if (stats.error && !systemStats)
    return (
      <p class="panel-error" role="alert">
        {stats.error}
      </p>
    );
  return (
    <dl class="figures small">
      <Figure label="Published" value={systemStats?.published} testId="published" />
      <Figure label="Succeeded" value={systemStats?.succeeded} testId="succeeded" />
      <Figure label="Dead-lettered" value={systemStats?.deadLettered} testId="dead-lettered" />
      <Figure label="In flight" value={systemStats?.inFlight} testId="in-flight" />
      <Figure label="Endput rows" value={systemStats?.endputRows} testId="endput-rows" />
    </dl>
  );
}

/** The counters and throughput of this system's events since the page opened. */
function LiveFigures({ system, live }: { system: System; live: LiveModel }) {
  const windowMinutes = (WINDOW_BUCKETS * BUCKET_MS) / 60_000;
  return (
    <>
      <dl class="counters">
        {COUNTED.map((status) => (
          <div key={status} class={`counter status-${status}`}>
            <dt>
              <StatusBadge status={status} />
            </dt>
            <dd data-testid={`count-${status}`}>{fmtInt(live.counters[system][status])}</dd>
          </div>
        ))}
      </dl>
      <Sparkline values={throughput(live, system, Date.now())} label={`${system} throughput`} windowMinutes={windowMinutes} />
    </>
  );
}

function Figure(props: { label: string; value: number | undefined; testId: string }) {
  return (
    <div class="figure">
      <dt>{props.label}</dt>
      <dd data-testid={props.testId}>{props.value === undefined ? "–" : fmtInt(props.value)}</dd>
    </div>
  );
}
