// The only module that reads process.env. Every setting is validated here, all
// errors are collected, and callers get one frozen, typed object.
import os from "node:os";

import { z } from "zod";

const int = (min: number, max = Number.MAX_SAFE_INTEGER) =>
  z.coerce
    .number({ error: "must be a number" })
    .int({ error: "must be a whole number" })
    .min(min, { error: `must be >= ${min}` })
    .max(max, { error: `must be <= ${max}` });
const bool = z
  .enum(["true", "false", "1", "0", "yes", "no", ""], { error: "must be true or false" })
  .transform((v) => v === "true" || v === "1" || v === "yes");
const isUrl = (v: string, protocols: string[]) => {
  try {
    return protocols.includes(new URL(v).protocol.replace(/:$/, ""));
  } catch {
    return false;
  }
};
const url = (protocols: string[]) =>
  z.string().refine((v) => isUrl(v, protocols), { error: `must be a URL with scheme ${protocols.join(" or ")}` });
/** Comma-separated URLs (the nodes of a cluster), each checked; one problem names every bad entry. */
const urlList = (protocols: string[]) =>
  z.string().transform((v, ctx) => {
    const list = v.split(",").map((u) => u.trim());
    const bad = list.flatMap((u, i) =>
      u === ""
        ? [`node ${i + 1} is empty`]
        : isUrl(u, protocols)
          ? []
          : [`node ${i + 1} (${JSON.stringify(u)}) must be a URL with scheme ${protocols.join(" or ")}`],
    );
    if (bad.length > 0) ctx.addIssue({ code: "custom", message: bad.join("; "), input: v });
    return list;
  });
const name = z.string().regex(/^[a-zA-Z0-9_.-]{1,64}$/, { error: "must be 1-64 letters, digits, '.', '_' or '-'" });

const pg = url(["postgres", "postgresql"]);

const schema = z.object({
  SYSTEM1_DATABASE_URL: pg.default("postgresql://postgres:postgres@127.0.0.1:5432/system1"),
  SYSTEM2_DATABASE_URL: pg.default("postgresql://postgres:postgres@127.0.0.1:5432/system2"),
  ENDPUT_DATABASE_URL: pg.default("postgresql://postgres:postgres@127.0.0.1:5432/endput"),
  DATABASE_POOL_SIZE: int(1, 200).default(10),

  REDIS_URL: url(["redis", "rediss"]).default("redis://127.0.0.1:6379"),
  REDIS_PREFIX: name.default("tentativa"),

  AMQP_URL: urlList(["amqp", "amqps"]).default(["amqp://guest:guest@127.0.0.1:5672"]),
  AMQP_PREFIX: name.default("tentativa"),
  AMQP_QUEUE_TYPE: z.enum(["classic", "quorum"]).optional(),

  MONGO_URL: url(["mongodb", "mongodb+srv"]).default("mongodb://127.0.0.1:27017"),
  MONGO_DATABASE: name.default("pipeline"),
  MONGO_MAX_POOL_SIZE: int(1, 1000).default(20),
  LOG_TTL_SECONDS: int(1).default(7 * 24 * 3600),
  LOG_RETENTION: z.enum(["auto", "ttl-index", "sweeper"]).default("auto"),
  LOG_SWEEP_INTERVAL_MS: int(100).default(60_000),
  FERRETDB_POSTGRESQL_URL: pg.optional(),

  RETRY_DELAY_MS: int(0, 24 * 3600_000).default(10_000),
  RETRY_BACKOFF: z.enum(["fixed", "exponential"]).default("fixed"),
  RETRY_MAX_DELAY_MS: int(0, 24 * 3600_000).default(3600_000),
  MAX_ATTEMPTS: int(1, 100).default(5),

  CONSUMER_ID: z.string().min(1).max(128).optional(),
  CONSUMER_PREFETCH: int(1, 65535).default(1000),
  CONSUMER_BATCH_SIZE: int(1, 10_000).default(250),
  CONSUMER_BATCH_WAIT_MS: int(0, 10_000).default(10),
  CONSUMER_CONCURRENCY: int(1, 64).default(3),
  CONSUMER_PORT: int(0, 65535).default(9464),
  MAX_MESSAGE_BYTES: int(256, 128 * 1024 * 1024).default(64 * 1024),
  CONSUMER_MAX_REDELIVERIES: int(1, 1000).default(10),
  CONSUMER_NICE: int(0, 19).default(10),

  GATEWAY_HOST: z.string().min(1).default("127.0.0.1"),
  GATEWAY_NICE: int(-20, 0).default(-5),
  GATEWAY_PORT: int(0, 65535).default(4000),
  GATEWAY_TOKEN: z.string().min(16, { error: "must be at least 16 characters" }).optional(),
  GATEWAY_TOKEN_READS: bool.default(false),
  GATEWAY_ALLOW_ANONYMOUS: bool.default(false),
  GATEWAY_MAX_BODY_BYTES: int(1024).default(1024 * 1024),
  GATEWAY_MAX_CONNECTIONS: int(1, 1_000_000).default(4096),
  GATEWAY_CLIENT_CONNECTIONS: int(1, 1_000_000).default(256),
  GATEWAY_CONNECTION_OPERATIONS: int(1, 100_000).default(100),
  GATEWAY_HEADERS_TIMEOUT_MS: int(100, 600_000).default(10_000),
  GATEWAY_MAX_DEPTH: int(2, 100).default(12),
  GATEWAY_DRAIN_TIMEOUT_MS: int(0, 600_000).default(10_000),
  GATEWAY_MAX_COST: int(1).default(10_000),
  GATEWAY_MAX_TOKENS: int(10).default(2_000),
  GATEWAY_MAX_ALIASES: int(0).default(30),
  GATEWAY_MAX_DIRECTIVES: int(0).default(50),
  GATEWAY_REQUEST_TIMEOUT_MS: int(100, 600_000).default(15_000),
  GATEWAY_REQUEST_CONCURRENCY: int(1, 100).default(4),
  GATEWAY_RATE_LIMIT_WINDOW_MS: int(1000, 3600_000).default(60_000),
  GATEWAY_RATE_LIMIT_READS: int(1).default(300),
  GATEWAY_RATE_LIMIT_WRITES: int(1).default(120),
  GATEWAY_CLIENT_CONCURRENCY: int(1, 1000).default(4),
  GATEWAY_LOG_SCANS: int(1, 100).default(1),
  GATEWAY_CLIENT_SUBSCRIPTIONS: int(1, 10_000).default(10),
  GATEWAY_MAX_SUBSCRIPTIONS: int(1, 1_000_000).default(200),
  GATEWAY_SUBSCRIPTION_BUFFER: int(10, 1_000_000).default(10_000),
  SEED_MAX_COUNT: int(1, 10_000_000).default(100_000),
  PUBLISH_BATCH_SIZE: int(1, 100_000).default(2000),
  PUBLISH_LOCK_TTL_MS: int(1000).default(30_000),

  OTEL_EXPORTER_OTLP_ENDPOINT: url(["http", "https"]).optional(),
  OTEL_TRACES_EXPORTER: z.enum(["otlp", "console", "file", "none"]).optional(),
  OTEL_TRACES_FILE: z.string().min(1).default("traces.jsonl"),
  TRACE_URL_TEMPLATE: z
    .string()
    .refine((v) => v.includes("{traceId}") && isUrl(v.replaceAll("{traceId}", "0"), ["http", "https"]), {
      error: "must be an http(s) URL containing {traceId}",
    })
    .optional(),

  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
  LOG_PRETTY: bool.default(false),
});

export type Env = z.input<typeof schema>;
export const ENV_KEYS = Object.keys(schema.shape) as (keyof Env)[];

export class ConfigError extends Error {
  override name = "ConfigError";
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.problems = problems;
  }
}

function build(e: z.output<typeof schema>) {
  return {
    databases: {
      system1: e.SYSTEM1_DATABASE_URL,
      system2: e.SYSTEM2_DATABASE_URL,
      endput: e.ENDPUT_DATABASE_URL,
      poolSize: e.DATABASE_POOL_SIZE,
    },
    redis: { url: e.REDIS_URL, prefix: e.REDIS_PREFIX },
    broker: {
      /** Every node the processes may connect to; they take the next one when theirs goes away. */
      urls: e.AMQP_URL,
      /** The first node, for tools that talk to one broker. */
      url: e.AMQP_URL[0]!,
      prefix: e.AMQP_PREFIX,
      // A cluster's queues must survive the loss of a node: quorum queues unless told otherwise.
      queueType: e.AMQP_QUEUE_TYPE ?? (e.AMQP_URL.length > 1 ? "quorum" : "classic"),
    },
    mongo: {
      url: e.MONGO_URL,
      database: e.MONGO_DATABASE,
      maxPoolSize: e.MONGO_MAX_POOL_SIZE,
      ttlSeconds: e.LOG_TTL_SECONDS,
      retention: e.LOG_RETENTION,
      sweepIntervalMs: e.LOG_SWEEP_INTERVAL_MS,
      ferretdbBackendUrl: e.FERRETDB_POSTGRESQL_URL,
    },
    retry: {
      delayMs: e.RETRY_DELAY_MS,
      backoff: e.RETRY_BACKOFF,
      maxDelayMs: e.RETRY_MAX_DELAY_MS,
      maxAttempts: e.MAX_ATTEMPTS,
    },
    consumer: {
      id: e.CONSUMER_ID ?? `${os.hostname()}-${process.pid}`,
      prefetch: e.CONSUMER_PREFETCH,
      batchSize: e.CONSUMER_BATCH_SIZE,
      batchWaitMs: e.CONSUMER_BATCH_WAIT_MS,
      concurrency: e.CONSUMER_CONCURRENCY,
      port: e.CONSUMER_PORT,
      maxMessageBytes: e.MAX_MESSAGE_BYTES,
      /** A copy redelivered more often than this is dead-lettered as REJECTED. */
      maxRedeliveries: e.CONSUMER_MAX_REDELIVERIES,
      /** The consumer's CPU niceness: on a shared host the gateway's requests go before batch work. */
      nice: e.CONSUMER_NICE,
    },
    gateway: {
      /** The gateway's CPU niceness where it may raise it: its requests go before the stores' and the consumer's work. */
      nice: e.GATEWAY_NICE,
      host: e.GATEWAY_HOST,
      port: e.GATEWAY_PORT,
      token: e.GATEWAY_TOKEN,
      tokenReads: e.GATEWAY_TOKEN_READS,
      allowAnonymous: e.GATEWAY_ALLOW_ANONYMOUS,
      maxBodyBytes: e.GATEWAY_MAX_BODY_BYTES,
      maxConnections: e.GATEWAY_MAX_CONNECTIONS,
      clientConnections: e.GATEWAY_CLIENT_CONNECTIONS,
      connectionOperations: e.GATEWAY_CONNECTION_OPERATIONS,
      headersTimeoutMs: e.GATEWAY_HEADERS_TIMEOUT_MS,
      maxDepth: e.GATEWAY_MAX_DEPTH,
      drainTimeoutMs: e.GATEWAY_DRAIN_TIMEOUT_MS,
      maxCost: e.GATEWAY_MAX_COST,
      maxTokens: e.GATEWAY_MAX_TOKENS,
      maxAliases: e.GATEWAY_MAX_ALIASES,
      maxDirectives: e.GATEWAY_MAX_DIRECTIVES,
      requestTimeoutMs: e.GATEWAY_REQUEST_TIMEOUT_MS,
      requestConcurrency: e.GATEWAY_REQUEST_CONCURRENCY,
      rateLimitWindowMs: e.GATEWAY_RATE_LIMIT_WINDOW_MS,
      rateLimitReads: e.GATEWAY_RATE_LIMIT_READS,
      rateLimitWrites: e.GATEWAY_RATE_LIMIT_WRITES,
      clientConcurrency: e.GATEWAY_CLIENT_CONCURRENCY,
      logScans: e.GATEWAY_LOG_SCANS,
      clientSubscriptions: e.GATEWAY_CLIENT_SUBSCRIPTIONS,
      maxSubscriptions: e.GATEWAY_MAX_SUBSCRIPTIONS,
      subscriptionBuffer: e.GATEWAY_SUBSCRIPTION_BUFFER,
      seedMaxCount: e.SEED_MAX_COUNT,
      publishBatchSize: e.PUBLISH_BATCH_SIZE,
      publishLockTtlMs: e.PUBLISH_LOCK_TTL_MS,
    },
    tracing: tracingOf(e),
    logs: { level: e.LOG_LEVEL, pretty: e.LOG_PRETTY },
  };
}

/**
 * Tracing is off unless an exporter is named or an OTLP endpoint is given. `file` appends
 * every finished span to OTEL_TRACES_FILE as one JSON line (tests and offline inspection).
 */
function tracingOf(e: z.output<typeof schema>) {
  const exporter = e.OTEL_TRACES_EXPORTER ?? (e.OTEL_EXPORTER_OTLP_ENDPOINT ? "otlp" : "none");
  return {
    enabled: exporter !== "none",
    exporter,
    // The OTLP/HTTP exporter posts to <endpoint>/v1/traces, as the specification says for this variable.
    otlpTracesUrl: `${(e.OTEL_EXPORTER_OTLP_ENDPOINT ?? "http://localhost:4318").replace(/\/+$/, "")}/v1/traces`,
    file: e.OTEL_TRACES_FILE,
    urlTemplate: e.TRACE_URL_TEMPLATE ?? null,
  };
}

type DeepReadonly<T> = { readonly [K in keyof T]: T[K] extends object ? DeepReadonly<T[K]> : T[K] };
export type Config = DeepReadonly<ReturnType<typeof build>>;

function deepFreeze<T>(o: T): T {
  for (const v of Object.values(o as object)) if (v && typeof v === "object") deepFreeze(v);
  return Object.freeze(o);
}

// Booleans read an empty value as false; every other setting reads it as unset.
const EMPTY_IS_FALSE = new Set(["GATEWAY_TOKEN_READS", "GATEWAY_ALLOW_ANONYMOUS", "LOG_PRETTY"]);

type Vars = Partial<Record<string, string | undefined>>;

/**
 * Reads the configuration from `vars`, the process environment when none are given;
 * given `vars`, nothing else is read (so `readConfig({})` is the documented defaults).
 * Throws a ConfigError that names every bad variable and the rule it broke.
 */
export function readConfig(vars: Vars = process.env): Config {
  const raw: Record<string, string | undefined> = {};
  for (const key of Object.keys(schema.shape)) {
    const value = vars[key];
    raw[key] = value === "" && !EMPTY_IS_FALSE.has(key) ? undefined : value;
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    throw new ConfigError(
      parsed.error.issues.map((i) => {
        const key = String(i.path[0]);
        const shown = key.endsWith("TOKEN") ? "(hidden)" : JSON.stringify(raw[key]);
        return `${key}=${shown}: ${i.message}`;
      }),
    );
  }
  return deepFreeze(build(parsed.data));
}

/** The process environment's settings with `overrides` on top (tests and the bench: unique names on the environment's servers). */
export function readConfigWith(overrides: Partial<Record<keyof Env, string>>): Config {
  return readConfig({ ...settingsOf(process.env), ...defined(overrides) });
}

const defined = (vars: Vars) =>
  Object.fromEntries(Object.entries(vars).filter(([, v]) => v !== undefined)) as Record<string, string>;
const pick = (vars: Vars, keys: readonly string[]) => defined(Object.fromEntries(keys.map((k) => [k, vars[k]])));
const settingsOf = (vars: Vars) => pick(vars, ENV_KEYS);

// What a child process needs from the system to run at all: where programs are, a home,
// a temp dir, the locale and the time zone, and Node's own options.
const SYSTEM_KEYS = ["PATH", "HOME", "USER", "LOGNAME", "SHELL", "TMPDIR", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TERM"];
const NODE_KEYS = ["NODE_OPTIONS", "NODE_EXTRA_CA_CERTS"];
// The knobs of scripts/services.sh and scripts/start.sh (ports and directories of the local services).
const SCRIPT_KEYS = [
  "PG_PORT",
  "REDIS_PORT",
  "MONGO_PORT",
  "AMQP_PORT",
  "RABBITMQ_MGMT_PORT",
  "RABBITMQ_EPMD_PORT",
  "RABBITMQ_NODENAME",
  "RABBITMQ_NODES",
  "SERVICES_DIR",
  "START_RUN_DIR",
];

/**
 * The environment of a child process this project starts (the gateway, the consumer, the
 * Prisma CLI, scripts/services.sh and scripts/start.sh): the system's basics, this process's
 * settings and the local-services knobs, with `overrides` on top. Nothing else of this
 * process's environment is handed on.
 */
export function childEnvironment(overrides: Vars = {}): Record<string, string> {
  return {
    ...pick(process.env, [...SYSTEM_KEYS, ...NODE_KEYS, ...SCRIPT_KEYS]),
    ...settingsOf(process.env),
    ...defined(overrides),
  };
}

/** The benchmark's variables (BENCH_*); bench/options.ts validates them with its flags. */
export const BENCH_KEYS = [
  "BENCH_QUICK",
  "BENCH_N",
  "BENCH_RAW_N",
  "BENCH_MIX_N",
  "BENCH_SCALING_N",
  "BENCH_PUBLISH_ROWS",
  "BENCH_LOG_DOCS",
  "BENCH_READ_SECONDS",
  "BENCH_CONNECTIONS",
  "BENCH_RETRY_DELAY_MS",
  "BENCH_TRACING",
] as const;
export function benchVariables(): Readonly<Partial<Record<(typeof BENCH_KEYS)[number], string>>> {
  return Object.freeze(pick(process.env, BENCH_KEYS));
}

/** DATABASE_URL, which scripts/prisma.ts sets for each run of the Prisma CLI (read by prisma/migration-adapter.ts). */
export function prismaCliDatabaseUrl(): string {
  const url = process.env.DATABASE_URL;
  if (!url) throw new Error("DATABASE_URL must be set for the Prisma CLI");
  return url;
}
