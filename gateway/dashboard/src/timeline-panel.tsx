// One message's attempt timeline from the attempt log; refreshed as its events arrive.
import { useEffect, useState } from "preact/hooks";

import { errorText } from "./api.ts";
import { useServices } from "./context.ts";
import { fmtDuration, fmtTime } from "./format.ts";
import { type Attempt, MESSAGE_HISTORY, type ProcessingEvent } from "./operations.ts";
import { StatusBadge } from "./status-badge.tsx";
import { useStore } from "./store.ts";

type Loaded = { messageId: string; attempts: Attempt[] } | { messageId: string; error: string };
type OnEvent = (listener: (event: ProcessingEvent) => void) => () => void;

export function TimelinePanel(props: { onEvent: OnEvent }) {
  const { selectedMessage } = useServices();
  const selected = useStore(selectedMessage);
  const { loaded, loading, reload } = useHistory(selected, props.onEvent);
  const shown = loaded && loaded.messageId === selected ? loaded : null;

  return (
    <section class="card timeline-panel" aria-label="Message timeline">
      <header class="card-header">
        <h2>Message timeline</h2>
        {loading && <span class="muted">loading…</span>}
      </header>
      <Lookup
        selected={selected}
        onShow={(id) => {
          if (id === selected) reload();
          else selectedMessage.set(id);
        }}
      />
      {!selected && <p class="empty">No message selected.</p>}
      {shown && "error" in shown && (
        <p class="panel-error" role="alert">
          {shown.error}
        </p>
      )}
      {shown && "attempts" in shown && <Attempts messageId={shown.messageId} attempts={shown.attempts} />}
    </section>
  );
}

/** The selected message's history, read again after a burst of its events or on reload(). */
function useHistory(selected: string | null, onEvent: OnEvent) {
  const { api } = useServices();
  const [loaded, setLoaded] = useState<Loaded | null>(null);
  const [loading, setLoading] = useState(false);
  const [reloads, setReloads] = useState(0);

  useEffect(() => {
    if (!selected) return;
    let current = true;
    setLoading(true);
    api
      .query(MESSAGE_HISTORY, { messageId: selected })
      .then(
        (r) => current && setLoaded({ messageId: selected, attempts: r.messageHistory }),
        (err: unknown) => current && setLoaded({ messageId: selected, error: errorText(err) }),
      )
      .finally(() => current && setLoading(false));
    return () => {
      current = false;
    };
  }, [api, selected, reloads]);

  // A new attempt of the open message: read the log again, once per burst.
  useEffect(() => {
    if (!selected) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const off = onEvent((e) => {
      if (e.messageId !== selected || timer) return;
      timer = setTimeout(() => {
        timer = undefined;
        setReloads((n) => n + 1);
      }, 300);
    });
    return () => {
      off();
      clearTimeout(timer);
    };
  }, [onEvent, selected]);

  return { loaded, loading, reload: () => setReloads((n) => n + 1) };
}

/** The message id field; follows the selection made elsewhere. */
function Lookup(props: { selected: string | null; onShow(messageId: string): void }) {
  const [draft, setDraft] = useState(props.selected ?? "");
  useEffect(() => {
    if (props.selected) setDraft(props.selected);
  }, [props.selected]);

  return (
    <form
      class="lookup"
      onSubmit={(e) => {
        e.preventDefault();
        const id = draft.trim();
        if (id) props.onShow(id);
      }}
    >
      <input
        type="text"
        class="mono"
        placeholder="Paste a messageId, or click one in the lists"
        aria-label="Message id"
        value={draft}
        spellcheck={false}
        onInput={(e) => setDraft(e.currentTarget.value)}
      />
      <button type="submit">Show</button>
    </form>
  );
}

function Attempts(props: { messageId: string; attempts: Attempt[] }) {
  return (
    <>
      <p class="mono muted" data-testid="timeline-message-id">
        {props.messageId}
      </p>
      {props.attempts.length === 0 ? (
        <p class="empty">The attempt log has nothing for this message id.</p>
      ) : (
        <ol class="timeline" aria-label={`Attempts of ${props.messageId}`}>
          {props.attempts.map((a, i) => (
            <AttemptItem key={i} attempt={a} />
          ))}
        </ol>
      )}
    </>
  );
}

function AttemptItem({ attempt: a }: { attempt: Attempt }) {
  return (
    <li class={`status-${a.status}`} data-status={a.status} data-attempt={a.attempt} data-round={a.round}>
      <div class="timeline-head">
        <StatusBadge status={a.status} />
        <span>
          attempt {a.attempt}
          {a.round > 0 ? ` · round ${a.round}` : ""}
        </span>
        <span class="mono muted">{fmtTime(a.processedAt)}</span>
        <span class="muted">{fmtDuration(a.durationMs)}</span>
        <span class="muted" title="consumer">
          {a.consumerId}
        </span>
      </div>
      {a.error && <div class="timeline-error">{a.error}</div>}
      {a.traceId && (
        <div class="timeline-trace mono muted" data-testid="timeline-trace">
          trace{" "}
          {a.traceUrl ? (
            <a href={a.traceUrl} target="_blank" rel="noreferrer noopener">
              {a.traceId}
            </a>
          ) : (
            a.traceId
          )}
        </div>
      )}
    </li>
  );
}
