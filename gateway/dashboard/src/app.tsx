import { useServices } from "./context.ts";
import { DeadLetterGroupsPanel } from "./dead-letter-groups-panel.tsx";
import { DeadLettersPanel } from "./dead-letters-panel.tsx";
import { EventsPanel } from "./events-panel.tsx";
import { Header } from "./header.tsx";
import { OVERVIEW, PIPELINE_STATS, SYSTEMS } from "./operations.ts";
import { queueKind, QueuesPanel } from "./queues-panel.tsx";
import { SystemCard } from "./system-card.tsx";
import { TimelinePanel } from "./timeline-panel.tsx";
import { ToastsView } from "./toasts-view.tsx";
import { TokenPanel } from "./token-panel.tsx";
import { useLive } from "./use-live.ts";
import { usePoll } from "./use-poll.ts";

const POLL_MS = 2_000;

export function App() {
  const { api } = useServices();
  const live = useLive();
  const overview = usePoll(() => api.query(OVERVIEW), POLL_MS);
  const stats = usePoll(() => api.query(PIPELINE_STATS).then((r) => r.pipelineStats), POLL_MS);
  const dlqDepth = stats.data?.queues.find((q) => queueKind(q.name) === "dead-letter")?.messages;

  return (
    <>
      <Header connection={live.connection} onReconnect={live.reconnect} />
      <main>
        <div class="grid systems">
          {SYSTEMS.map((system) => (
            <SystemCard key={system} system={system} overview={overview} stats={stats} live={live.model} />
          ))}
        </div>
        <div class="grid two">
          <QueuesPanel stats={stats} />
          <DeadLettersPanel depth={dlqDepth} />
        </div>
        <DeadLetterGroupsPanel depth={dlqDepth} />
        <div class="grid two">
          <EventsPanel live={live.model} onReset={live.reset} />
          <TimelinePanel onEvent={live.onEvent} />
        </div>
      </main>
      <TokenPanel />
      <ToastsView />
    </>
  );
}
