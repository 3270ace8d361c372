// The dead-letter queue's head, with redrive per message or for all of them.
import { useState } from "preact/hooks";

import { errorText } from "./api.ts";
import { refreshNow, useServices } from "./context.ts";
import { type Column, DeadLetterTable, MessageLink } from "./dead-letter-table.tsx";
import { fmtInt, fmtTime, shortId } from "./format.ts";
import { DEAD_LETTERS, type DeadLetter, REDRIVE, type RedriveResult } from "./operations.ts";
import { useStore } from "./store.ts";
import { usePoll } from "./use-poll.ts";

const SHOWN = 20;
// Peeking holds the listed messages unacked for a moment, so it runs when the
// DLQ depth changes rather than on a short timer (and the depth poll rarely overlaps it).
const IDLE_REFRESH_MS = 15_000;

const COLUMNS: Column[] = [
  { label: "Message" },
  { label: "System" },
  { label: "Order", numeric: true },
  { label: "Reason" },
  { label: "Attempts", numeric: true },
  { label: "Dead at" },
];

type Redrive = (scope: string, variables: { messageIds?: string[]; dryRun?: boolean }) => Promise<RedriveResult | null>;

/** `depth` is the dead-letter queue's length from pipelineStats, when known. */
export function DeadLettersPanel(props: { depth: number | undefined }) {
  const { api, selectedMessage } = useServices();
  const selected = useStore(selectedMessage);
  const polled = usePoll(() => api.query(DEAD_LETTERS, { first: SHOWN }), IDLE_REFRESH_MS, props.depth);
  const { busy, result, redrive } = useRedrive();
  const letters = polled.data?.deadLetters ?? [];

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
        <RedriveAll busy={busy} redrive={redrive} />
      </header>
      <DeadLetterTable
        columns={COLUMNS}
        polled={polled}
        empty={
          letters.length === 0 ? { unavailable: "Dead letters are unavailable.", none: "The dead-letter queue is empty." } : null
        }
        resultTestId="redrive-result"
        result={
          result && (
            <>
              Redrive {result.scope}: matched {fmtInt(result.value.matched)}, moved {fmtInt(result.value.moved)}
              {result.value.dryRun ? " (dry run)" : ""}
            </>
          )
        }
      >
        {letters.map((d) => (
          <DeadLetterRow
            key={d.messageId}
            letter={d}
            selected={d.messageId === selected}
            busy={busy}
            onSelect={(id) => selectedMessage.set(id)}
            redrive={redrive}
          />
        ))}
      </DeadLetterTable>
    </section>
  );
}

function useRedrive() {
  const services = useServices();
  const [busy, setBusy] = useState<string | null>(null);
  const [result, setResult] = useState<{ scope: string; value: RedriveResult } | null>(null);

  const redrive: Redrive = async (scope, variables) => {
    setBusy(scope);
    try {
      const { redriveDeadLetters: r } = await services.api.mutate(REDRIVE, variables);
      if (r.dryRun) return r;
      setResult({ scope, value: r });
      services.toasts.notify("success", `Redrive ${scope}: matched ${fmtInt(r.matched)}, moved ${fmtInt(r.moved)}`);
      refreshNow(services);
      return r;
    } catch (err) {
      services.toasts.notify("error", `Redrive ${scope} failed: ${errorText(err)}`);
      return null;
    } finally {
      setBusy(null);
    }
  };
  return { busy, result, redrive };
}

/** "Redrive all" first asks how many would move, and waits for a second click. */
function RedriveAll(props: { busy: string | null; redrive: Redrive }) {
  const { busy, redrive } = props;
  const [confirmAll, setConfirmAll] = useState<number | null>(null);

  async function redriveAll() {
    const dry = await redrive("all", { dryRun: true });
    if (dry) setConfirmAll(dry.matched);
  }

  if (confirmAll === null)
    return (
      <button type="button" disabled={busy !== null} onClick={() => void redriveAll()}>
        {busy === "all" ? "Counting…" : "Redrive all"}
      </button>
    );
  return (
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
  );
}

function DeadLetterRow(props: {
  letter: DeadLetter;
  selected: boolean;
  busy: string | null;
  onSelect(messageId: string): void;
  redrive: Redrive;
}) {
  const { letter: d, busy } = props;
  return (
    <tr class={props.selected ? "selected" : undefined} data-message-id={d.messageId}>
      <td>
        <MessageLink messageId={d.messageId} onSelect={props.onSelect} />
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
          onClick={() => void props.redrive(shortId(d.messageId), { messageIds: [d.messageId] })}
        >
          {busy === shortId(d.messageId) ? "Redriving…" : "Redrive"}
        </button>
      </td>
    </tr>
  );
}
