// The gateway token: asked for when a mutation answers UNAUTHENTICATED, or set from the header.
import { useEffect, useRef, useState } from "preact/hooks";

import { useServices } from "./context.ts";
import { useStore } from "./store.ts";

export function TokenPanel() {
  const { prompt, tokens } = useServices();
  const { open, reason } = useStore(prompt);
  const token = useStore(tokens);
  const [draft, setDraft] = useState("");
  const input = useRef<HTMLInputElement>(null);

  useEffect(() => {
    if (!open) return;
    setDraft("");
    input.current?.focus();
  }, [open]);

  if (!open) return null;
  return (
    <div class="token-panel" role="dialog" aria-modal="false" aria-labelledby="token-title">
      <form
        onSubmit={(e) => {
          e.preventDefault();
          if (draft.trim()) prompt.answer(draft);
        }}
      >
        <h2 id="token-title">Gateway token</h2>
        {reason ? (
          <p class="panel-error" role="alert">
            {reason}
          </p>
        ) : (
          <p class="muted">Sent as Authorization: Bearer … with every request; kept in this browser's localStorage.</p>
        )}
        <label>
          <span>Token</span>
          <input
            ref={input}
            type="password"
            autocomplete="off"
            aria-label="Gateway token"
            value={draft}
            onInput={(e) => setDraft(e.currentTarget.value)}
          />
        </label>
        <div class="actions">
          <button type="submit" class="primary" disabled={!draft.trim()}>
            {reason ? "Save and retry" : "Save"}
          </button>
          {token && !reason && (
            <button
              type="button"
              onClick={() => {
                tokens.set(null);
                prompt.answer(null);
              }}
            >
              Forget token
            </button>
          )}
          <button type="button" class="quiet" onClick={() => prompt.answer(null)}>
            Cancel
          </button>
        </div>
      </form>
    </div>
  );
}
