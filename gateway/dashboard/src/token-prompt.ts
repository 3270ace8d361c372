// Asking the operator for the gateway token: every caller waiting at the same
// time shares one prompt, and the answer (or a cancel) releases them all.
import { createStore, type Store } from "./store.ts";

export interface PromptState {
  open: boolean;
  reason: string | null;
}

export interface TokenPrompt extends Pick<Store<PromptState>, "get" | "subscribe"> {
  ask(reason: string | null): Promise<string | null>;
  answer(token: string | null): void;
}

export function createTokenPrompt(): TokenPrompt {
  const store = createStore<PromptState>({ open: false, reason: null });
  let waiting: ((token: string | null) => void)[] = [];
  return {
    get: store.get,
    subscribe: store.subscribe,
    ask(reason) {
      store.set({ open: true, reason });
      return new Promise((resolve) => waiting.push(resolve));
    },
    answer(token) {
      const resolvers = waiting;
      waiting = [];
      store.set({ open: false, reason: null });
      for (const r of resolvers) r(token?.trim() || null);
    },
  };
}
