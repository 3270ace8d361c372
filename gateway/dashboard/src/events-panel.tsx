// The latest processing events, newest first; a click opens the message's timeline.
import { useServices } from "./context.ts";
import { fmtInt, fmtTime, shortId } from "./format.ts";
import { type LiveModel, MAX_EVENTS } from "./live.ts";
import { StatusBadge } from "./status-badge.tsx";
import { useStore } from "./store.ts";

export function EventsPanel(props: { live: LiveModel; onReset(): void }) {
  const { live } = props;
  const { selectedMessage } = useServices();
  const selected = useStore(selectedMessage);
  return (
    <section class="card events-panel" aria-label="Latest events">
      <header class="card-header">
        <h2>Latest events</h2>
        <span class="muted" data-testid="events-received">
          {fmtInt(live.received)} received · last {Math.min(live.events.length, MAX_EVENTS)} shown
        </span>
        <button type="button" class="quiet" onClick={props.onReset}>
          Reset counters
        </button>
      </header>
      <div class="scroll">
        <table class="events">
          <thead>
            <tr>
              <th scope="col">At</th>
              <th scope="col">System</th>
              <th scope="col">Order</th>
              <th scope="col">Attempt</th>
              <th scope="col">Status</th>
              <th scope="col">Message</th>
            </tr>
          </thead>
          <tbody>
            {live.events.length === 0 && (
              <tr>
                <td colSpan={6} class="empty">
                  No events yet: seed and publish some orders.
                </td>
              </tr>
            )}
            {live.events.map((e) => (
              <tr key={e.seq} class={e.messageId === selected ? "selected" : undefined}>
                <td class="mono">{fmtTime(e.at)}</td>
                <td>{e.system ?? "unreadable"}</td>
                <td class="num">{e.orderId ?? "–"}</td>
                <td class="num">
                  {e.attempt}
                  {e.round > 0 && <span class="muted"> · r{e.round}</span>}
                </td>
                <td>
                  <StatusBadge status={e.status} />
                </td>
                <td>
                  <button
                    type="button"
                    class="link mono"
                    title={`Show the attempt timeline of ${e.messageId}`}
                    data-message-id={e.messageId}
                    onClick={() => selectedMessage.set(e.messageId)}
                  >
                    {shortId(e.messageId)}
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
