// The clients and shared stores the panels use, created once in main.tsx.
import { createContext } from "preact";
import { useContext } from "preact/hooks";

import type { Api, TokenStore } from "./api.ts";
import type { Store } from "./store.ts";
import type { Toasts } from "./toasts.ts";
import type { TokenPrompt } from "./token-prompt.ts";

export interface Services {
  api: Api;
  tokens: TokenStore;
  toasts: Toasts;
  prompt: TokenPrompt;
  /** The message whose timeline is open. */
  selectedMessage: Store<string | null>;
  /** Bumped after a mutation so the polled panels refresh at once. */
  refreshes: Store<number>;
}

export const ServicesContext = createContext<Services | null>(null);

export function useServices(): Services {
  const services = useContext(ServicesContext);
  if (!services) throw new Error("useServices() outside <ServicesContext.Provider>");
  return services;
}

export function refreshNow(services: Services): void {
  services.refreshes.set(services.refreshes.get() + 1);
}
