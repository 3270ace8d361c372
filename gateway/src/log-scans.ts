// Pages of the attempt log that read every entry their filter matches (on FerretDB, which sorts
// in its own process: `messages` without an order id) cost the log server in proportion to the
// log: 1.2 s of FerretDB's CPU for a page by status at 50,000 entries, 14 s with no filter. At most
// GATEWAY_LOG_SCANS of them run at once in a gateway; another is refused, not queued. A slot is
// held until the log server answers, also after the request gave up on it (REQUEST_TIMEOUT),
// since the server goes on reading until then.
import { DomainError } from "./errors.ts";
import { perClient } from "./rate-limits.ts";

export interface LogScans {
  /** Runs one scanning page, or throws RATE_LIMITED (`extensions.limit: "logScans"`) when as many run already. */
  run<T>(fn: () => Promise<T>): Promise<T>;
}

export function createLogScans(max: number): LogScans {
  // One allowance for the whole gateway: every client's pages read the same log.
  const slots = perClient(max);
  return {
    async run(fn) {
      if (!slots.take("gateway")) {
        throw new DomainError(
          "RATE_LIMITED",
          `at most ${max} messages page(s) that read the whole attempt log at once: filter by orderId, or try again when it finishes`,
          { limit: "logScans", logScans: max, http: { status: 429 } },
        );
      }
      try {
        return await fn();
      } finally {
        slots.release("gateway");
      }
    },
  };
}
