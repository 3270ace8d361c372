// The dead-letter queue's head, with redrive per message or for all of them.
import { useState } from "preact/hooks";

import { errorText } from "./api.ts";
import { refreshNow, useServices } from "./context.ts";
import { fmtInt, fmtTime, shortId } from "./format.ts";
import { DEAD_LETTERS, REDRIVE, type RedriveResult } from "./operations.ts";
import { useStore } from "./store.ts";
import { usePoll } from "./use-poll.ts";

const SHOWN = 20;
// Peeking holds the listed messages unacked for a moment, so it runs when the
// DLQ depth changes rather than on a short timer (and the depth poll rarely overlaps it).
const IDLE_REFRESH_MS = 15_000;

/** `depth` is the dead-letter queue's length from pipelineStats, when known. */
export function DeadLettersPanel(props: { depth: number | undefined }) {
  const services = useServices();
  const { api, toasts, selectedMessage } = services;
  const selected = useStore(selectedMessage);
  const polled = usePoll(() => api.query(DEAD_LETTERS, { first: SHOWN }), IDLE_REFRESH_MS, props.depth);
  const [busy, setBusy] = useState<string | null>(null);
  const [result, setResult] = useState<{ scope: string; value: RedriveResult } | null>(null);
  const [confirmAll, setConfirmAll] = useState<number | null>(null);
  const letters = polled.data?.deadLetters ?? [];

  async function redrive(scope: string, variables: { messageIds?: string[]; dryRun?: boolean }) {
    setBusy(scope);
    try {
      const { redriveDeadLetters: r } = await api.mutate(REDRIVE, variables);
      if (r.dryRun) return r;
      setResult({ scope, value: r });
      toasts.notify("success", `Redrive ${scope}: matched ${fmtInt(r.matched)}, moved ${fmtInt(r.moved)}`);
      refreshNow(services);
      return r;
    } catch (err) {
      toasts.notify("error", `Redrive ${scope} failed: ${errorText(err)}`);
      return null;
    } finally {
      setBusy(null);
    }
  }

  /** "Redrive all" first asks how many would move, and waits for a second click. */
  async function redriveAll() {
    const dry = await redrive("all", { dryRun: true });
    if (dry) setConfirmAll(dry.matched);
  }

  return (
    <section class="card dead-letters-panel" aria-label="Dead letters">
      <header class="card-header">
        <h2>Dead letters</h2>
        {letters.length > 0 && (
          <span class="muted">
            oldest {fmtInt(letters.length)}
            {props.depth !== undefined && props.depth > letters.length ? ` of ${fmtInt(props.depth)}` : ""}
          </span>
        )}
        {confirmAll === null ? (
          <button type="button" disabled={busy !== null} onClick={() => void redriveAll()}>
            {busy === "all" ? "Counting…" : "Redrive all"}
          </button>
        ) : (
          <span class="confirm" role="group" aria-label="Confirm redrive of all dead letters">
            <span>{confirmAll === 0 ? "Nothing to redrive." : `Move ${fmtInt(confirmAll)} back to the primary queue?`}</span>
            {confirmAll > 0 && (
              <button
                type="button"
                class="danger"
                disabled={busy !== null}
                onClick={() => {
                  setConfirmAll(null);
                  void redrive("all", {});
                }}
              >
                Confirm redrive
              </button>
            )}
            <button type="button" class="quiet" onClick={() => setConfirmAll(null)}>
              {confirmAll > 0 ? "Cancel" : "OK"}
            </button>
          </span>
        )}
      </header>
      {polled.error && (
        <p class="panel-error" role="alert">
          {polled.error}
        </p>
      )}
      {result && (
        <p class="result" role="status" data-testid="redrive-result">
          Redrive {result.scope}: matched {fmtInt(result.value.matched)}, moved {fmtInt(result.value.moved)}
          {result.value.dryRun ? " (dry run)" : ""}
        </p>
      )}
      <div class="scroll short">
        <table>
          <thead>
            <tr>
              <th scope="col">Message</th>
              <th scope="col">System</th>
              <th scope="col" class="num">
                Order
              </th>
              <th scope="col">Reason</th>
              <th scope="col" class="num">
                Attempts
              </th>
              <th scope="col">Dead at</th>
              <th scope="col">
                <span class="sr-only">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {letters.length === 0 && (
              <tr>
                <td colSpan={7} class="empty">
                  {polled.error ? "Dead letters are unavailable." : polled.data ? "The dead-letter queue is empty." : "Loading…"}
                </td>
              </tr>
            )}
            {letters.map((d) => (
              <tr key={d.messageId} class={d.messageId === selected ? "selected" : undefined} data-message-id={d.messageId}>
                <td>
                  <button
                    type="button"
                    class="link mono"
                    title={`Show the attempt timeline of ${d.messageId}`}
                    onClick={() => selectedMessage.set(d.messageId)}
                  >
                    {shortId(d.messageId)}
                  </button>
                </td>
                <td>{d.system ?? "unreadable"}</td>
                <td class="num">{d.orderId ?? "–"}</td>
                <td>{d.reason}</td>
                <td class="num">
                  {d.attempts}
                  {d.round > 0 && <span class="muted"> · r{d.round}</span>}
                </td>
                <td class="mono">{d.deadAt ? fmtTime(d.deadAt) : "–"}</td>
                <td>
                  <button
                    type="button"
                    disabled={busy !== null}
                    aria-label={`Redrive ${d.messageId}`}
                    onClick={() => void redrive(shortId(d.messageId), { messageIds: [d.messageId] })}
                  >
                    {busy === shortId(d.messageId) ? "Redriving…" : "Redrive"}
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </section>
  );
}
