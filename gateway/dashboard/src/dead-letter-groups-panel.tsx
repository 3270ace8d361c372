// Dead letters by system and reason, with redrive and discard per group (discard asks first).
import { useState } from "preact/hooks";

import { errorText } from "./api.ts";
import { refreshNow, useServices } from "./context.ts";
import { fmtInt, fmtTime, shortId } from "./format.ts";
import { DEAD_LETTER_GROUPS, type DeadLetterGroup, DISCARD_GROUP, REDRIVE_GROUP } from "./operations.ts";
import { usePoll } from "./use-poll.ts";

// The groups are read from Redis, not the queue: cheap enough to poll like the stats.
const POLL_MS = 5_000;

const nameOf = (g: DeadLetterGroup) => `${g.system ?? "unreadable"} ${g.reason}`;

/** `depth` is the dead-letter queue's length: a change reloads the groups at once. */
export function DeadLetterGroupsPanel(props: { depth: number | undefined }) {
  const services = useServices();
  const { api, toasts, selectedMessage } = services;
  const polled = usePoll(() => api.query(DEAD_LETTER_GROUPS), POLL_MS, props.depth);
  const [busy, setBusy] = useState<string | null>(null);
  const [confirming, setConfirming] = useState<string | null>(null);
  const [result, setResult] = useState<string | null>(null);
  const groups = polled.data?.deadLetterGroups ?? [];

  async function act(kind: "redrive" | "discard", g: DeadLetterGroup) {
    const name = nameOf(g);
    setBusy(name);
    setConfirming(null);
    try {
      const variables = { system: g.system, reason: g.reason };
      let text: string;
      if (kind === "redrive") {
        const { redriveDeadLetters: r } = await api.mutate(REDRIVE_GROUP, variables);
        text = `Redrive ${name}: matched ${fmtInt(r.matched)}, moved ${fmtInt(r.moved)}`;
      } else {
        const { discardDeadLetters: r } = await api.mutate(DISCARD_GROUP, variables);
        text = `Discard ${name}: matched ${fmtInt(r.matched)}, discarded ${fmtInt(r.discarded)}`;
      }
      setResult(text);
      toasts.notify("success", text);
      refreshNow(services);
    } catch (err) {
      toasts.notify("error", `${kind === "redrive" ? "Redrive" : "Discard"} ${name} failed: ${errorText(err)}`);
    } finally {
      setBusy(null);
    }
  }

  return (
    <section class="card dead-letter-groups-panel" aria-label="Dead-letter groups">
      <header class="card-header">
        <h2>Dead-letter groups</h2>
        {groups.length > 0 && <span class="muted">{fmtInt(groups.reduce((n, g) => n + g.count, 0))} dead letters</span>}
      </header>
      {polled.error && (
        <p class="panel-error" role="alert">
          {polled.error}
        </p>
      )}
      {result && (
        <p class="result" role="status" data-testid="group-result">
          {result}
        </p>
      )}
      <div class="scroll short">
        <table>
          <thead>
            <tr>
              <th scope="col">System</th>
              <th scope="col">Reason</th>
              <th scope="col" class="num">
                Count
              </th>
              <th scope="col">Oldest</th>
              <th scope="col">Newest</th>
              <th scope="col">Sample</th>
              <th scope="col">
                <span class="sr-only">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {groups.length === 0 && (
              <tr>
                <td colSpan={7} class="empty">
                  {polled.error ? "Dead-letter groups are unavailable." : polled.data ? "No dead letters." : "Loading…"}
                </td>
              </tr>
            )}
            {groups.map((g) => {
              const name = nameOf(g);
              return (
                <tr key={name} data-group={name}>
                  <td>{g.system ?? "unreadable"}</td>
                  <td>{g.reason}</td>
                  <td class="num" data-testid="group-count">
                    {fmtInt(g.count)}
                  </td>
                  <td class="mono">{fmtTime(g.oldestDeadAt)}</td>
                  <td class="mono">{fmtTime(g.newestDeadAt)}</td>
                  <td>
                    <button
                      type="button"
                      class="link mono"
                      title={`Show the attempt timeline of ${g.sampleMessageId}`}
                      onClick={() => selectedMessage.set(g.sampleMessageId)}
                    >
                      {shortId(g.sampleMessageId)}
                    </button>
                  </td>
                  <td>
                    {confirming === name ? (
                      <span class="confirm" role="group" aria-label={`Confirm discard of ${name}`}>
                        <span>Discard {fmtInt(g.count)} for good?</span>
                        <button type="button" class="danger" disabled={busy !== null} onClick={() => void act("discard", g)}>
                          Confirm discard
                        </button>
                        <button type="button" class="quiet" onClick={() => setConfirming(null)}>
                          Cancel
                        </button>
                      </span>
                    ) : (
                      <>
                        <button
                          type="button"
                          disabled={busy !== null}
                          aria-label={`Redrive group ${name}`}
                          onClick={() => void act("redrive", g)}
                        >
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
                    )}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
    </section>
  );
}
