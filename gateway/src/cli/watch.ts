// Prints live processing events, one line each, and a summary on exit.
//
//   npm run watch -- [--url http://localhost:4000/graphql] [--system SYSTEM1] [--status DEAD_LETTERED] [--token T]
import { parseArgs } from "node:util";

import { print } from "graphql";
import { createClient } from "graphql-ws";
import WebSocket from "ws";

import { PROCESSING_STATUSES, type ProcessingStatus, type System, SYSTEMS } from "../../../common/contract.ts";
import type { ResultOf, VariablesOf } from "../../client/graphql.ts";
import { WATCH as QUERY } from "./operations.ts";

function usage(message: string): never {
  console.error(`watch: ${message}`);
  console.error("usage: npm run watch -- [--url URL] [--system SYSTEM1|SYSTEM2] [--status STATUS] [--token TOKEN]");
  process.exit(2);
}

interface WatchOptions {
  url: URL;
  token: string | undefined;
  variables: VariablesOf<typeof QUERY>;
}

const oneOf = <T extends string>(list: readonly T[], value: string | undefined): value is T =>
  (list as readonly string[]).includes(value ?? "");

/** The command line, checked: a bad one ends the process with the usage (exit 2). */
function readOptions(): WatchOptions {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        url: { type: "string", default: "http://localhost:4000/graphql" },
        system: { type: "string" },
        status: { type: "string" },
        token: { type: "string" },
      },
      strict: true,
    }));
  } catch (err) {
    usage((err as Error).message);
  }
  if (values.system && !oneOf<System>(SYSTEMS, values.system)) usage(`--system must be one of ${SYSTEMS.join(", ")}`);
  if (values.status && !oneOf<ProcessingStatus>(PROCESSING_STATUSES, values.status)) {
    usage(`--status must be one of ${PROCESSING_STATUSES.join(", ")}`);
  }
  let url: URL;
  try {
    url = new URL(values.url);
  } catch {
    usage(`--url is not a URL: ${values.url}`);
  }
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  const variables = {
    system: oneOf<System>(SYSTEMS, values.system) ? values.system : null,
    status: oneOf<ProcessingStatus>(PROCESSING_STATUSES, values.status) ? values.status : null,
  };
  return { url, token: values.token, variables };
}

type Event = ResultOf<typeof QUERY>["processingEvents"];

/** One line per event: when, outcome, which order, which attempt, the message id and the error. */
function eventLine(e: Event): string {
  const where = e.system ? `${e.system}#${e.orderId}` : "unreadable";
  const round = e.round > 0 ? ` round ${e.round}` : "";
  return `${e.at}  ${e.status.padEnd(15)} ${where.padEnd(16)} attempt ${e.attempt}${round}  ${e.messageId}${e.error ? `  ${e.error}` : ""}`;
}

/** Counts events by outcome and prints the summary on exit. */
function createTally() {
  const counts = new Map<string, number>();
  const started = Date.now();
  return {
    add: (e: Event) => counts.set(e.status, (counts.get(e.status) ?? 0) + 1),
    print() {
      const seconds = ((Date.now() - started) / 1000).toFixed(1);
      const total = [...counts.values()].reduce((a, b) => a + b, 0);
      const parts = [...counts].map(([k, v]) => `${k}=${v}`).join(" ");
      console.error(`\nwatch: ${total} events in ${seconds}s${parts ? `: ${parts}` : ""}`);
    },
  };
}

function main(): void {
  const { url, token, variables } = readOptions();
  const tally = createTally();
  const client = createClient({
    url: url.toString(),
    webSocketImpl: WebSocket,
    connectionParams: token ? { authorization: `Bearer ${token}` } : undefined,
    retryAttempts: Infinity,
    shouldRetry: () => true,
    on: {
      connected: () =>
        console.error(
          `watch: connected to ${url.toString()}${variables.system ? `, system ${variables.system}` : ""}${variables.status ? `, status ${variables.status}` : ""}`,
        ),
      closed: () => console.error("watch: connection closed; retrying"),
    },
  });

  const stop = client.subscribe<ResultOf<typeof QUERY>>(
    { query: print(QUERY), variables },
    {
      next: ({ data, errors }) => {
        if (errors?.length) {
          console.error(`watch: ${errors.map((e) => e.message).join("; ")}`);
          return;
        }
        tally.add(data!.processingEvents);
        console.log(eventLine(data!.processingEvents));
      },
      error: (err) => {
        console.error(`watch: ${err instanceof Error ? err.message : JSON.stringify(err)}`);
        tally.print();
        process.exit(1);
      },
      complete: () => {
        tally.print();
        process.exit(0);
      },
    },
  );

  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.on(signal, () => {
      stop();
      void client.dispose();
      tally.print();
      process.exit(0);
    });
  }
}

main();
