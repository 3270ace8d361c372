// The composition root of the dashboard: every client and shared store is made here.
import "./styles.css";

import { render } from "preact";

import { createApi, createTokenStore, gatewayUrls } from "./api.ts";
import { App } from "./app.tsx";
import { type Services, ServicesContext } from "./context.ts";
import { createStore } from "./store.ts";
import { createToasts } from "./toasts.ts";
import { createTokenPrompt } from "./token-prompt.ts";

const tokens = createTokenStore(window.localStorage);
// The open timeline lives in the URL hash, so a link to it can be shared.
const selectedMessage = createStore<string | null>(new URLSearchParams(window.location.hash.slice(1)).get("message"));
selectedMessage.subscribe((id) =>
  window.history.replaceState(null, "", id ? `#message=${encodeURIComponent(id)}` : window.location.pathname),
);
const prompt = createTokenPrompt();
const services: Services = {
  api: createApi({ ...gatewayUrls(window.location), tokens, askToken: (reason) => prompt.ask(reason) }),
  tokens,
  toasts: createToasts(),
  prompt,
  selectedMessage,
  refreshes: createStore(0),
};

render(
  <ServicesContext.Provider value={services}>
    <App />
  </ServicesContext.Provider>,
  document.getElementById("app")!,
);
