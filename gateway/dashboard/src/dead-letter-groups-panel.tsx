// Dead letters by system and reason, with redrive and discard per group (discard asks first), and
// a restore from the queue offered when the groups count fewer dead letters than the queue holds.
import { useState } from "preact/hooks";

import { errorText } from "./api.ts";
import { refreshNow, useServices } from "./context.ts";
import { type Column, DeadLetterTable, MessageLink } from "./dead-letter-table.tsx";
import { fmtInt, fmtTime } from "./format.ts";
import { DEAD_LETTER_GROUPS, type DeadLetterGroup, DISCARD_GROUP, REDRIVE_GROUP, RESTORE_GROUPS } from "./operations.ts";
import { usePoll } from "./use-poll.ts";

// The groups are read from Redis, not the queue: cheap enough to poll like the stats.
const POLL_MS = 5_000;

const COLUMNS: Column[] = [
  { label: "System" },
  { label: "Reason" },
  { label: "Count", numeric: true },
  { label: "Oldest" },
  { label: "Newest" },
  { label: "Sample" },
];

const nameOf = (g: DeadLetterGroup) => `${g.system ?? "unreadable"} ${g.reason}`;

type Act = (kind: "redrive" | "discard", g: DeadLetterGroup) => Promise<void>;

const RESTORING = "restore";

/** `depth` is the dead-letter queue's length: a change reloads the groups at once. */
export function DeadLetterGroupsPanel(props: { depth: number | undefined }) {
  const { api, selectedMessage } = useServices();
  const polled = usePoll(() => api.query(DEAD_LETTER_GROUPS), POLL_MS, props.depth);
  const [confirming, setConfirming] = useState<string | null>(null);
  const { busy, result, act, restore } = useGroupActions(() => setConfirming(null));
  const groups = polled.data?.deadLetterGroups ?? [];
  const counted = groups.reduce((n, g) => n + g.count, 0);
  // Fewer than the queue holds: Redis lost groups (or a dead letter was forwarded twice, one member).
  const behind = polled.data !== undefined && props.depth !== undefined && props.depth > counted;

  return (
    <section class="card dead-letter-groups-panel" aria-label="Dead-letter groups">
      <header class="card-header">
        <h2>Dead-letter groups</h2>
        {groups.length > 0 && <span class="muted">{fmtInt(counted)} dead letters</span>}
      </header>
      {behind && (
        <p class="notice" data-testid="groups-behind">
          The queue holds {fmtInt(props.depth!)} dead letters; the groups count {fmtInt(counted)}.{" "}
          <button type="button" disabled={busy !== null} onClick={() => void restore()}>
            {busy === RESTORING ? "Restoring…" : "Restore from queue"}
          </button>
        </p>
      )}
      <DeadLetterTable
        columns={COLUMNS}
        polled={polled}
        empty={groups.length === 0 ? { unavailable: "Dead-letter groups are unavailable.", none: "No dead letters." } : null}
        resultTestId="group-result"
        result={result}
      >
        {groups.map((g) => (
          <tr key={nameOf(g)} data-group={nameOf(g)}>
            <td>{g.system ?? "unreadable"}</td>
            <td>{g.reason}</td>
            <td class="num" data-testid="group-count">
              {fmtInt(g.count)}
            </td>
            <td class="mono">{fmtTime(g.oldestDeadAt)}</td>
            <td class="mono">{fmtTime(g.newestDeadAt)}</td>
            <td>
              <MessageLink messageId={g.sampleMessageId} onSelect={(id) => selectedMessage.set(id)} />
            </td>
            <td>
              <GroupActions group={g} busy={busy} confirming={confirming === nameOf(g)} setConfirming={setConfirming} act={act} />
            </td>
          </tr>
        ))}
      </DeadLetterTable>
    </section>
  );
}

function useGroupActions(onStart: () => void) {
  const services = useServices();
  const [busy, setBusy] = useState<string | null>(null);
  const [result, setResult] = useState<string | null>(null);

  /** Runs one action at a time; its outcome goes to the panel and a toast, then every panel refreshes. */
  const run = async (key: string, label: string, work: () => Promise<string>) => {
    setBusy(key);
    onStart();
    try {
      const text = await work();
      setResult(text);
      services.toasts.notify("success", text);
      refreshNow(services);
    } catch (err) {
      services.toasts.notify("error", `${label} failed: ${errorText(err)}`);
    } finally {
      setBusy(null);
    }
  };
  const act: Act = (kind, g) => {
    const name = nameOf(g);
    const variables = { system: g.system, reason: g.reason };
    if (kind === "redrive")
      return run(name, `Redrive ${name}`, async () => {
        const { redriveDeadLetters: r } = await services.api.mutate(REDRIVE_GROUP, variables);
        return `Redrive ${name}: matched ${fmtInt(r.matched)}, moved ${fmtInt(r.moved)}`;
      });
    return run(name, `Discard ${name}`, async () => {
      const { discardDeadLetters: r } = await services.api.mutate(DISCARD_GROUP, variables);
      return `Discard ${name}: matched ${fmtInt(r.matched)}, discarded ${fmtInt(r.discarded)}`;
    });
  };
  const restore = () =>
    run(RESTORING, "Restore", async () => {
      const { restoreDeadLetterGroups: r } = await services.api.mutate(RESTORE_GROUPS);
      return (
        `Restore: read ${fmtInt(r.walked)} dead letters, restored ${fmtInt(r.restored)}, removed ${fmtInt(r.removed)}` +
        (r.complete ? "" : " (the walk stops at 100,000)")
      );
    });
  return { busy, result, act, restore };
}

function GroupActions(props: {
  group: DeadLetterGroup;
  busy: string | null;
  confirming: boolean;
  setConfirming(name: string | null): void;
  act: Act;
}) {
  const { group: g, busy, act, setConfirming } = props;
  const name = nameOf(g);
  if (props.confirming)
    return (
      <span class="confirm" role="group" aria-label={`Confirm discard of ${name}`}>
        <span>Discard {fmtInt(g.count)} for good?</span>
        <button type="button" class="danger" disabled={busy !== null} onClick={() => void act("discard", g)}>
          Confirm discard
        </button>
        <button type="button" class="quiet" onClick={() => setConfirming(null)}>
          Cancel
        </button>
      </span>
    );
  return (
    <>
      <button type="button" disabled={busy !== null} aria-label={`Redrive group ${name}`} onClick={() => void act("redrive", g)}>
        {busy === name ? "Working…" : "Redrive group"}
      </button>{" "}
      <button
        type="button"
        class="danger"
        disabled={busy !== null}
        aria-label={`Discard group ${name}`}
        onClick={() => setConfirming(name)}
      >
        Discard group
      </button>
    </>
  );
}
