import { useServices } from "./context.ts";
import { useStore } from "./store.ts";

export function ToastsView() {
  const { toasts } = useServices();
  const list = useStore(toasts);
  return (
    <div class="toasts" aria-live="polite">
      {list.map((t) => (
        <div key={t.id} class={`toast toast-${t.kind}`} role={t.kind === "error" ? "alert" : "status"}>
          <span class="toast-text">
            {t.text}
            {t.repeats > 1 && <span class="muted"> ×{t.repeats}</span>}
          </span>
          <button type="button" class="quiet" aria-label="Dismiss" onClick={() => toasts.dismiss(t.id)}>
            ×
          </button>
        </div>
      ))}
    </div>
  );
}
