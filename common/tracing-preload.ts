// Runs before a process's entry point (node --import ./common/tracing-preload.ts ...):
// with tracing on, it registers the hooks that let the OpenTelemetry instrumentations
// patch amqplib, ioredis, mongodb, pg, graphql and http, which must happen before
// those packages are first imported. With tracing off it loads nothing more.
import { readConfig } from "./config.ts";

let enabled = false;
try {
  enabled = readConfig().tracing.enabled;
} catch {
  // An invalid configuration is reported by the process's main().
}
if (enabled) await (await import("./tracing-sdk.ts")).instrument();
