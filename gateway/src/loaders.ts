// The per-request DataLoaders: Order.history for every order of a page in one log query.
import DataLoader from "dataloader";

import type { LogDocument } from "../../common/attempt-log.ts";
import type { System } from "../../common/contract.ts";
import type { Context, Deps } from "./context.ts";
import type { RequestBudget } from "./request-budget.ts";

export function makeLoaders(deps: Deps, budget: RequestBudget): Context["loaders"] {
  return {
    history: new DataLoader<{ system: System; orderId: number }, LogDocument[], string>(
      async (keys) => {
        const docs = await budget.run("mongodb", () => deps.log.historyForOrders([...keys]));
        const byKey = new Map<string, LogDocument[]>();
        for (const d of docs) {
          const k = `${d.system}:${d.orderId}`;
          byKey.set(k, [...(byKey.get(k) ?? []), d]);
        }
        return keys.map((k) => byKey.get(`${k.system}:${k.orderId}`) ?? []);
      },
      { cacheKeyFn: (k) => `${k.system}:${k.orderId}` },
    ),
  };
}
