import { useServices } from "./context.ts";
import { useStore } from "./store.ts";
import type { Connection } from "./use-live.ts";

const LABELS: Record<Connection["state"], string> = {
  connecting: "connecting…",
  live: "live",
  reconnecting: "reconnecting…",
  failed: "stopped",
};

export function Header(props: { connection: Connection; onReconnect(): void }) {
  const { tokens, prompt } = useServices();
  const token = useStore(tokens);
  const { connection } = props;
  const detail = "reason" in connection ? connection.reason : undefined;
  return (
    <header class="top">
      <h1>
        tentativa <span class="muted">operator dashboard</span>
      </h1>
      <span class={`pill connection-${connection.state}`} title={detail} data-testid="connection">
        events: {LABELS[connection.state]}
      </span>
      {connection.state === "failed" && (
        <button type="button" class="quiet" onClick={props.onReconnect}>
          Reconnect
        </button>
      )}
      <span class="spacer" />
      <button
        type="button"
        class="quiet"
        onClick={() =>
          void prompt.ask(null).then((t) => {
            if (t) tokens.set(t);
          })
        }
      >
        {token ? "Token: set" : "Token: none"}
      </button>
      <a href="/graphql" target="_blank" rel="noopener">
        GraphiQL
      </a>
    </header>
  );
}
