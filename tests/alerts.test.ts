// The alerting rules in docs/alerts.yml name only metrics and labels that a running gateway
// and consumer really export, and the gauges they page on read what the pipeline holds.
import fs from "node:fs";
import http from "node:http";
import path from "node:path";

import { afterEach, describe, expect, it } from "vitest";
import { parse } from "yaml";

import { createHealthServer } from "../common/http-health.ts";
import { createConsumerMetrics } from "../consumer/src/metrics.ts";
import { graphql } from "../gateway/client/graphql.ts";
import { SEED } from "../gateway/client/operations.ts";
import { closeServer, listen } from "./support/browser.ts";
import { createTestEnv, type TestEnv, waitFor } from "./support/env.ts";
import { gqlOn } from "./typed-gql.ts";

const RULES = path.resolve(import.meta.dirname, "../docs/alerts.yml");
/** Labels Prometheus adds to every scraped series itself. */
const TARGET_LABELS = new Set(["instance", "job"]);

let env: TestEnv | undefined;
const servers: http.Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await closeServer(s);
  await env?.cleanup();
  env = undefined;
});

/** Metric name -> the label names of each of its samples, from a text exposition. */
function exported(text: string): Map<string, Set<string>[]> {
  const out = new Map<string, Set<string>[]>();
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+\S+/.exec(line);
    if (!m) continue;
    const labels = new Set([...(m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="/g)].map((l) => l[1]!));
    out.set(m[1]!, [...(out.get(m[1]!) ?? []), labels]);
  }
  return out;
}

/** The series sample values of one metric, keyed by their label text. */
function samples(text: string, name: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    const m = new RegExp(`^${name}(\\{.*\\})?\\s+(\\S+)$`).exec(line);
    if (m) out.set(m[1] ?? "", Number(m[2]));
  }
  return out;
}

interface Rule {
  alert: string;
  expr: string;
}

/** Every metric selector in an expression, with the labels its matchers and enclosing `by` name. */
function selectors(expr: string): { metric: string; labels: string[] }[] {
  const grouping = [...expr.matchAll(/\bby\s*\(([^)]*)\)/g)].flatMap((m) =>
    m[1]!
      .split(",")
      .map((l) => l.trim())
      .filter((l) => l && !TARGET_LABELS.has(l)),
  );
  return [...expr.matchAll(/\b(tentativa_[a-zA-Z0-9_:]*)\s*(?:\{([^}]*)\})?/g)].map((m) => ({
    metric: m[1]!,
    labels: [
      ...new Set([...[...(m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)/g)].map((l) => l[1]!), ...grouping]),
    ],
  }));
}

describe("docs/alerts.yml", () => {
  it("names only metrics and labels the gateway and the consumer export, and the gauges read the pipeline", async () => {
    const e = (env = await createTestEnv({ MAX_ATTEMPTS: "1" }));
    const consumerMetrics = createConsumerMetrics();
    await e.startConsumer({}, consumerMetrics);
    const health = createHealthServer({ registry: consumerMetrics.registry, checks: [] });
    servers.push(health);
    const consumerBase = await listen(health);
    const gatewayBase = await listen(e.gateway.server);

    // Ten rows, five published: five pending; the published false orders dead-letter on their only attempt.
    expect((await gqlOn(e, SEED, { system: "SYSTEM1", count: 10, ratio: 0 })).errors).toBeUndefined();
    const publish = await gqlOn(
      e,
      graphql(`
        mutation {
          publishPending(system: SYSTEM1, limit: 5) {
            published
          }
        }
      `),
    );
    expect(publish.errors).toBeUndefined();
    await e.drained();
    await waitFor(
      () => e.queueDepth(e.broker.topology.dlq),
      (n) => n === 5,
    );

    const scrape = async (base: string) => {
      const res = await fetch(`${base}/metrics`);
      expect(res.status).toBe(200);
      return res.text();
    };
    const [gatewayText, consumerText] = await Promise.all([scrape(gatewayBase), scrape(consumerBase)]);
    const metrics = new Map([...exported(gatewayText), ...exported(consumerText)]);

    const doc = parse(fs.readFileSync(RULES, "utf8")) as { groups: { name: string; rules: Rule[] }[] };
    const rules = doc.groups.flatMap((g) => g.rules);
    expect(rules.map((r) => r.alert).sort()).toEqual([
      "TentativaDeadLetterOld",
      "TentativaDeadLettersGrowing",
      "TentativaDeliveryStuck",
      "TentativaLogWritesFailing",
      "TentativaNoConsumer",
      "TentativaPublishLag",
      "TentativaRetryStorm",
    ]);
    const missing: string[] = [];
    for (const rule of rules) {
      const found = selectors(rule.expr);
      expect(found.length, rule.alert).toBeGreaterThan(0);
      for (const { metric, labels } of found) {
        const series = metrics.get(metric);
        if (!series) missing.push(`${rule.alert}: ${metric}`);
        else if (!series.some((s) => labels.every((l) => s.has(l))))
          missing.push(`${rule.alert}: ${metric}{${labels.join(",")}}`);
      }
    }
    expect(missing).toEqual([]);

    // The gauges the rules page on read what the pipeline holds.
    expect(samples(gatewayText, "tentativa_pending_rows")).toEqual(
      new Map([
        ['{system="SYSTEM1"}', 5],
        ['{system="SYSTEM2"}', 0],
      ]),
    );
    expect(samples(gatewayText, "tentativa_dead_letters")).toEqual(new Map([['{system="SYSTEM1",reason="max-attempts"}', 5]]));
    expect(samples(gatewayText, "tentativa_dead_letter_oldest_age_seconds").get("")).toBeGreaterThan(0);
    expect(samples(gatewayText, "tentativa_primary_queue_consumers").get("")).toBe(1);
    expect(samples(consumerText, "tentativa_consumer_oldest_unacked_seconds").get("")).toBe(0);
    expect(samples(consumerText, "tentativa_messages_processed_total").get('{status="DEAD_LETTERED",system="SYSTEM1"}')).toBe(5);
    expect(samples(consumerText, "tentativa_store_errors_total").get('{step="mongo"}')).toBe(0);
  });

  it("a selector the processes do not export is caught", () => {
    const metrics = exported('tentativa_dead_letters{system="SYSTEM1",reason="max-attempts"} 3\n');
    const check = (expr: string) =>
      selectors(expr).every(({ metric, labels }) => metrics.get(metric)?.some((s) => labels.every((l) => s.has(l))) ?? false);
    expect(check("sum by (system) (tentativa_dead_letters) > 0")).toBe(true);
    expect(check("tentativa_dead_letter{system='x'} > 0")).toBe(false);
    expect(check('tentativa_dead_letters{queue="dlq"} > 0')).toBe(false);
    expect(check("sum by (queue) (tentativa_dead_letters) > 0")).toBe(false);
  });
});
