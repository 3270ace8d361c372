// Messages for the operator. Errors stay until dismissed: nothing the API answers is swallowed.
import { createStore, type Store } from "./store.ts";

export interface Toast {
  id: number;
  kind: "error" | "success" | "info";
  text: string;
  repeats: number;
}

export interface Toasts extends Pick<Store<Toast[]>, "get" | "subscribe"> {
  notify(kind: Toast["kind"], text: string): void;
  dismiss(id: number): void;
}

const MAX_TOASTS = 6;
const SUCCESS_MS = 6_000;

export function createToasts(): Toasts {
  const store = createStore<Toast[]>([]);
  let nextId = 1;
  const dismiss = (id: number) => store.set(store.get().filter((t) => t.id !== id));
  return {
    get: store.get,
    subscribe: store.subscribe,
    dismiss,
    notify(kind, text) {
      const list = store.get();
      const same = list.find((t) => t.kind === kind && t.text === text);
      if (same) {
        store.set(list.map((t) => (t === same ? { ...t, repeats: t.repeats + 1 } : t)));
        return;
      }
      const toast: Toast = { id: nextId++, kind, text, repeats: 1 };
      store.set([...list, toast].slice(-MAX_TOASTS));
      if (kind !== "error") setTimeout(() => dismiss(toast.id), SUCCESS_MS);
    },
  };
}
