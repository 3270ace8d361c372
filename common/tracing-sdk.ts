// The OpenTelemetry SDK: loaded only when tracing is on (common/tracing.ts and
// common/tracing-preload.ts import it dynamically), so a process without tracing
// never loads it.
//
// The instrumentations patch amqplib, ioredis, mongodb, pg, graphql and http as
// they are loaded: for ES modules that takes a loader hook registered before the
// first import of those packages, which is why tracing-preload.ts runs before the
// entry point. The tracer provider itself starts in each process's main(), which
// knows the service name and owns its shutdown.
import fs from "node:fs";
import { register } from "node:module";

import { type Instrumentation, registerInstrumentations } from "@opentelemetry/instrumentation";
import { AmqplibInstrumentation } from "@opentelemetry/instrumentation-amqplib";
import { GraphQLInstrumentation } from "@opentelemetry/instrumentation-graphql";
import { HttpInstrumentation } from "@opentelemetry/instrumentation-http";
import { IORedisInstrumentation } from "@opentelemetry/instrumentation-ioredis";
import { MongoDBInstrumentation } from "@opentelemetry/instrumentation-mongodb";
import { PgInstrumentation } from "@opentelemetry/instrumentation-pg";
import { NodeSDK } from "@opentelemetry/sdk-node";
import { BatchSpanProcessor, ConsoleSpanExporter, type ReadableSpan, type SpanExporter } from "@opentelemetry/sdk-trace";
import { createAddHookMessageChannel } from "import-in-the-middle";

import type { Config } from "./config.ts";

let instrumented = false;

/** Registers the module hooks and the instrumentations; call before the instrumented packages are imported. */
export async function instrument(): Promise<void> {
  if (instrumented) return;
  instrumented = true;
  // Only the modules an instrumentation asks for are wrapped; the project's own files are not touched.
  const { registerOptions, waitForAllMessagesAcknowledged } = createAddHookMessageChannel();
  register("import-in-the-middle/hook.mjs", import.meta.url, registerOptions);
  registerInstrumentations({ instrumentations: instrumentations() });
  await waitForAllMessagesAcknowledged();
}

/** Whether instrument() ran (the process was started with the preload). */
export const isInstrumented = () => instrumented;

function instrumentations(): Instrumentation[] {
  // Client calls made outside any span (the consumer's store writes between batches, pollers,
  // health checks) would each start a trace of their own: they are recorded only inside one.
  return [
    new HttpInstrumentation({ ignoreIncomingRequestHook: (req) => /^\/(metrics|readyz|healthz)\b/.test(req.url ?? "") }),
    new GraphQLInstrumentation({ mergeItems: true, ignoreTrivialResolveSpans: true }),
    new PgInstrumentation({ requireParentSpan: true }),
    new IORedisInstrumentation({ requireParentSpan: true }),
    new MongoDBInstrumentation({ requireParentSpan: true }),
    new AmqplibInstrumentation(),
  ];
}

/** Starts the tracer provider for `service`; resolves to its shutdown (which flushes the spans). */
export function startSdk(config: Config, service: string): () => Promise<void> {
  const sdk = new NodeSDK({
    serviceName: `tentativa-${service}`,
    spanProcessors: [new BatchSpanProcessor({ exporter: exporterFor(config), scheduledDelayMillis: 1000 })],
    // Traces only: no metric readers or log processors from the OTEL_* environment.
    metricReaders: [],
    logRecordProcessors: [],
    instrumentations: [],
  });
  sdk.start();
  return () => sdk.shutdown();
}

async function otlpExporter(url: string): Promise<SpanExporter> {
  const { OTLPTraceExporter } = await import("@opentelemetry/exporter-trace-otlp-proto");
  return new OTLPTraceExporter({ url });
}

function exporterFor(config: Config): SpanExporter {
  const t = config.tracing;
  if (t.exporter === "console") return new ConsoleSpanExporter();
  if (t.exporter === "file") return new JsonLinesExporter(t.file);
  return new LazyExporter(otlpExporter(t.otlpTracesUrl));
}

/** Appends each finished span to a file as one JSON line. */
export class JsonLinesExporter implements SpanExporter {
  private readonly file: string;
  constructor(file: string) {
    this.file = file;
  }
  export(spans: ReadableSpan[], done: (result: { code: number; error?: Error }) => void): void {
    try {
      fs.appendFileSync(this.file, spans.map((s) => `${JSON.stringify(spanRecord(s))}\n`).join(""));
      done({ code: 0 });
    } catch (err) {
      done({ code: 1, error: err as Error });
    }
  }
  async shutdown(): Promise<void> {}
}

/** What JsonLinesExporter writes for a span. */
export interface SpanRecord {
  service: string;
  scope: string;
  traceId: string;
  spanId: string;
  parentSpanId: string | null;
  name: string;
  kind: number;
  startMs: number;
  endMs: number;
  status: { code: number; message?: string };
  attributes: Record<string, unknown>;
  links: { traceId: string; spanId: string }[];
}

const ms = ([s, ns]: [number, number]) => s * 1000 + ns / 1e6;

function spanRecord(s: ReadableSpan): SpanRecord {
  const c = s.spanContext();
  return {
    service: String(s.resource.attributes["service.name"] ?? ""),
    scope: s.instrumentationScope.name,
    traceId: c.traceId,
    spanId: c.spanId,
    parentSpanId: s.parentSpanContext?.spanId ?? null,
    name: s.name,
    kind: s.kind,
    startMs: ms(s.startTime),
    endMs: ms(s.endTime),
    status: s.status,
    attributes: s.attributes,
    links: s.links.map((l) => ({ traceId: l.context.traceId, spanId: l.context.spanId })),
  };
}

/** An exporter whose module loads in the background (the OTLP exporter pulls in protobuf). */
class LazyExporter implements SpanExporter {
  private readonly inner: Promise<SpanExporter>;
  constructor(inner: Promise<SpanExporter>) {
    this.inner = inner;
  }
  export(spans: ReadableSpan[], done: (result: { code: number; error?: Error }) => void): void {
    this.inner.then(
      (e) => e.export(spans, done),
      (error: Error) => done({ code: 1, error }),
    );
  }
  async shutdown(): Promise<void> {
    await (await this.inner).shutdown();
  }
  async forceFlush(): Promise<void> {
    await (await this.inner).forceFlush?.();
  }
}
