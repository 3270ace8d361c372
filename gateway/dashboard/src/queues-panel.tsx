// Queue depths from pipelineStats: the primary queue, the retry wait queues and the DLQ.
import { fmtInt } from "./format.ts";
import type { QueueStats } from "./operations.ts";
import type { Polled } from "./use-poll.ts";

type Kind = "primary" | "wait" | "dead-letter" | "other";

/** Names follow common/topology.ts: <prefix>.orders.primary, <prefix>.orders.retry.<ms>ms, <prefix>.orders.dlq. */
export function queueKind(name: string): Kind {
  if (name.endsWith(".primary")) return "primary";
  if (name.endsWith(".dlq")) return "dead-letter";
  if (/\.retry\.\d+ms$/.test(name)) return "wait";
  return "other";
}

const ORDER: Record<Kind, number> = { primary: 0, wait: 1, "dead-letter": 2, other: 3 };

export function QueuesPanel(props: { stats: Polled<{ queues: QueueStats[] }> }) {
  const { stats } = props;
  const queues = [...(stats.data?.queues ?? [])].sort(
    (a, b) => ORDER[queueKind(a.name)] - ORDER[queueKind(b.name)] || a.name.localeCompare(b.name, "en", { numeric: true }),
  );
  const deepest = Math.max(1, ...queues.map((q) => q.messages));
  return (
    <section class="card queues-panel" aria-label="Queues">
      <header class="card-header">
        <h2>Queues</h2>
        {stats.updatedAt && <span class="muted">updated {new Date(stats.updatedAt).toLocaleTimeString("en-GB")}</span>}
      </header>
      {stats.error && (
        <p class="panel-error" role="alert">
          {stats.error}
        </p>
      )}
      <table>
        <thead>
          <tr>
            <th scope="col">Queue</th>
            <th scope="col">Kind</th>
            <th scope="col" class="num">
              Messages
            </th>
            <th scope="col" class="num">
              Consumers
            </th>
          </tr>
        </thead>
        <tbody>
          {queues.length === 0 && (
            <tr>
              <td colSpan={4} class="empty">
                {stats.error ? "Queue depths are unavailable." : stats.data ? "No queues." : "Loading…"}
              </td>
            </tr>
          )}
          {queues.map((q) => {
            const kind = queueKind(q.name);
            return (
              <tr key={q.name} data-queue-kind={kind}>
                <td class="mono">{q.name}</td>
                <td>
                  <span class={`badge queue-${kind}`}>{kind}</span>
                </td>
                <td class="num">
                  <span class="bar" style={{ width: `${Math.round((q.messages / deepest) * 100)}%` }} aria-hidden="true" />
                  <span data-testid={`queue-messages-${kind}`}>{fmtInt(q.messages)}</span>
                </td>
                <td class="num">{fmtInt(q.consumers)}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </section>
  );
}
