// Benchmark options: command-line flags win over BENCH_* variables, which win
// over the defaults. --quick picks sizes for a run of about two minutes.
import { parseArgs } from "node:util";

import { benchVariables } from "../common/config.ts";

export const STEPS = ["raw", "happy", "mix", "scaling", "live", "publish", "read", "log-growth", "profile"] as const;
export type Step = (typeof STEPS)[number];

export interface Options {
  quick: boolean;
  /** Orders of the happy path and of the log-growth run (split over both systems). */
  n: number;
  /** Messages of the raw broker baseline. */
  rawN: number;
  /** Orders of the seed-mix run. */
  mixN: number;
  /** Orders of each scaling run. */
  scalingN: number;
  consumerCounts: number[];
  /** Live-event subscribers of the live run (a happy run of scalingN orders beside the one-consumer scaling run). */
  liveSubscribers: number;
  /** Pending rows the gateway publishes with no consumer running. */
  publishRows: number;
  /** Attempt-log documents generated for the read side and the log-growth run. */
  logDocs: number;
  /** Seconds of each autocannon run. */
  readSeconds: number;
  connections: number;
  retryDelayMs: number;
  steps: Set<Step>;
  /** Extra settings for every consumer child, e.g. CONSUMER_BATCH_SIZE=1000 (experiments). */
  consumerEnv: Record<string, string>;
  gatewayEnv: Record<string, string>;
  /** Node's arguments for the gateway children instead of the shipped ones (experiments). */
  gatewayNodeArgs: string[] | undefined;
  label: string | undefined;
  /** Keep the run's databases, queues and keys (for inspection). */
  keep: boolean;
}

/** The sizes the benchmark is specified at; a run below one of them reports it as scaled. */
export const ISSUE_SIZES = { n: 100_000, publishRows: 1_000_000, logDocs: 1_000_000, mixN: 100_000, scalingN: 100_000 };

/** Full-run defaults where the specified size does not fit the 10-minute budget on 2 cores (see BENCHMARKS.md). */
export const DEFAULT_SIZES = { mixN: 20_000, scalingN: 30_000, publishRows: 500_000, logDocs: 500_000 };

export class UsageError extends Error {
  override name = "UsageError";
}

const USAGE = `usage: npm run bench -- [options]
  --quick                 small sizes (about 2 minutes)
  --n N                   orders of the happy path, split over both systems (BENCH_N; default 100000, quick 10000)
  --raw-n N               messages of the raw broker baseline (BENCH_RAW_N; default max(n, 30000))
  --mix-n N               orders of the seed-mix run (BENCH_MIX_N)
  --scaling-n N           orders of each scaling run (BENCH_SCALING_N)
  --consumers 1,2,4       consumer processes of the scaling runs
  --live-subscribers K    processingEvents subscribers of the live run (default 4)
  --publish-rows N        rows published with no consumer (BENCH_PUBLISH_ROWS)
  --log-docs N            attempt-log documents for the read side (BENCH_LOG_DOCS)
  --read-seconds S        seconds of each autocannon run
  --connections C         autocannon connections (default 50)
  --retry-delay-ms MS     RETRY_DELAY_MS of the seed-mix run (default 200)
  --only a,b              steps to run: ${STEPS.join(",")} (profile is off unless named or --profile)
  --skip a,b              steps to leave out
  --profile               add a happy-path run with --cpu-prof and a batch-step timing
  --tracing               run the gateway and consumers with tracing on (BENCH_TRACING=1): every
                          span is serialised by the file exporter into /dev/null, so the run shows
                          the cost of the SDK and the instrumentations without a collector
  --consumer-env K=V      setting for the consumer children (repeatable)
  --gateway-env K=V       setting for the gateway children (repeatable)
  --gateway-node-args A   node's arguments for the gateway children instead of the shipped
                          ones, e.g. "--max-old-space-size=128 --import tsx" (experiments)
  --label TEXT            stored in the JSON (names an experiment)
  --keep                  do not drop the run's databases, queues and keys`;

function positive(name: string, raw: string | undefined): number {
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1)
    throw new UsageError(`${name} must be a positive whole number, got ${JSON.stringify(raw)}\n${USAGE}`);
  return n;
}

function stepList(raw: string): Step[] {
  const names = raw.split(",").map((s) => s.trim());
  for (const s of names) if (!(STEPS as readonly string[]).includes(s)) throw new UsageError(`unknown step ${s}\n${USAGE}`);
  return names as Step[];
}

function keyValue(raw: string): [string, string] {
  const m = /^([A-Z0-9_]+)=(.*)$/.exec(raw);
  if (!m) throw new UsageError(`expected KEY=VALUE, got ${JSON.stringify(raw)}\n${USAGE}`);
  return [m[1]!, m[2]!];
}

const value = { type: "string" } as const;
const OPTIONS = {
  quick: { type: "boolean" },
  profile: { type: "boolean" },
  keep: { type: "boolean" },
  tracing: { type: "boolean" },
  help: { type: "boolean", short: "h" },
  n: value,
  "raw-n": value,
  "mix-n": value,
  "scaling-n": value,
  consumers: value,
  "live-subscribers": value,
  "publish-rows": value,
  "log-docs": value,
  "read-seconds": value,
  connections: value,
  "retry-delay-ms": value,
  only: value,
  skip: value,
  label: value,
  "gateway-node-args": value,
  "consumer-env": { type: "string", multiple: true },
  "gateway-env": { type: "string", multiple: true },
} as const;

/** Tracing on, every span serialised and written away: its cost without a collector's. */
const TRACING_ENV = { OTEL_TRACES_EXPORTER: "file", OTEL_TRACES_FILE: "/dev/null" };

// parseArgs reads a separate value that starts with "-" as a forgotten value; the node
// arguments given to --gateway-node-args do start with it, so they are joined to the flag.
function joinNodeArgs(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    out.push(arg === "--gateway-node-args" && i + 1 < argv.length ? `${arg}=${argv[++i]}` : arg);
  }
  return out;
}

export function parseOptions(argv: string[]): Options {
  const env = benchVariables();
  let values;
  try {
    ({ values } = parseArgs({ args: joinNodeArgs(argv), options: OPTIONS, strict: true, allowPositionals: false }));
  } catch (err) {
    throw new UsageError(`${(err as Error).message}\n${USAGE}`);
  }
  if (values.help) throw new UsageError(USAGE);
  const quick = values.quick === true || env.BENCH_QUICK === "1" || env.BENCH_QUICK === "true";
  const size = (flag: keyof typeof values, envName: keyof typeof env, full: number, small: number) => {
    const raw = (values[flag] as string | undefined) ?? env[envName];
    return raw !== undefined && raw !== "" ? positive(`--${flag}`, raw) : quick ? small : full;
  };

  let steps = new Set<Step>(STEPS.filter((s) => s !== "profile"));
  if (values.only !== undefined) steps = new Set(stepList(values.only));
  if (values.skip !== undefined) for (const s of stepList(values.skip)) steps.delete(s);
  if (values.profile) steps.add("profile");

  const tracing = values.tracing === true || env.BENCH_TRACING === "1" || env.BENCH_TRACING === "true";
  const n = size("n", "BENCH_N", ISSUE_SIZES.n, 10_000);
  const consumers = (values.consumers ?? "1,2,4").split(",").map((c) => positive("--consumers", c));
  return {
    quick,
    n,
    // At least 30,000 so that each raw phase lasts a few seconds, not a blip the machine's other load can hide.
    rawN: size("raw-n", "BENCH_RAW_N", Math.max(n, 30_000), Math.max(n, 30_000)),
    mixN: size("mix-n", "BENCH_MIX_N", DEFAULT_SIZES.mixN, 4_000),
    scalingN: size("scaling-n", "BENCH_SCALING_N", DEFAULT_SIZES.scalingN, 10_000),
    consumerCounts: [...new Set(consumers)].sort((a, b) => a - b),
    liveSubscribers: positive("--live-subscribers", values["live-subscribers"] ?? "4"),
    publishRows: size("publish-rows", "BENCH_PUBLISH_ROWS", DEFAULT_SIZES.publishRows, 200_000),
    logDocs: size("log-docs", "BENCH_LOG_DOCS", DEFAULT_SIZES.logDocs, 100_000),
    readSeconds: size("read-seconds", "BENCH_READ_SECONDS", 10, 5),
    connections: size("connections", "BENCH_CONNECTIONS", 50, 50),
    retryDelayMs: size("retry-delay-ms", "BENCH_RETRY_DELAY_MS", 200, 200),
    steps,
    consumerEnv: { ...(tracing ? TRACING_ENV : {}), ...Object.fromEntries((values["consumer-env"] ?? []).map(keyValue)) },
    gatewayEnv: { ...(tracing ? TRACING_ENV : {}), ...Object.fromEntries((values["gateway-env"] ?? []).map(keyValue)) },
    gatewayNodeArgs: values["gateway-node-args"]?.trim().split(/\s+/).filter(Boolean),
    label: values.label ?? (tracing ? "tracing" : undefined),
    keep: values.keep === true,
  };
}
