import { readFileSync } from "node:fs";

import { describe, expect, it } from "vitest";

import { ConfigError, ENV_KEYS, readConfig } from "../common/config.ts";

const example = readFileSync(new URL("../.env.example", import.meta.url), "utf8");

/** The uncommented assignments of .env.example. */
function exampleSettings(): Record<string, string> {
  return Object.fromEntries([...example.matchAll(/^([A-Z][A-Z0-9_]+)=(.*)$/gm)].map((m) => [m[1]!, m[2]!]));
}

describe("configuration", () => {
  it("given no variables, reads none from the environment and yields the documented defaults", () => {
    const c = readConfig({});
    // .env.example lists every setting with its default; the commented ones are unset.
    expect(c).toEqual(readConfig(exampleSettings()));
    expect(c.databases).toEqual({
      system1: "postgresql://postgres:postgres@127.0.0.1:5432/system1",
      system2: "postgresql://postgres:postgres@127.0.0.1:5432/system2",
      endput: "postgresql://postgres:postgres@127.0.0.1:5432/endput",
      poolSize: 10,
    });
    expect(c.redis).toEqual({ url: "redis://127.0.0.1:6379", prefix: "tentativa" });
    expect(c.broker).toEqual({
      urls: ["amqp://guest:guest@127.0.0.1:5672"],
      url: "amqp://guest:guest@127.0.0.1:5672",
      prefix: "tentativa",
      queueType: "classic",
    });
    expect(c.mongo).toEqual({
      url: "mongodb://127.0.0.1:27017",
      database: "pipeline",
      maxPoolSize: 20,
      ttlSeconds: 604_800,
      retention: "auto",
      sweepIntervalMs: 60_000,
      ferretdbBackendUrl: undefined,
    });
    expect(c.retry).toEqual({ delayMs: 10_000, backoff: "fixed", maxDelayMs: 3_600_000, maxAttempts: 5 });
    expect(c.consumer).toMatchObject({ prefetch: 1000, batchSize: 250, batchWaitMs: 10, concurrency: 3, port: 9464 });
    expect(c.consumer.maxMessageBytes).toBe(65_536);
    expect(c.gateway).toMatchObject({
      host: "127.0.0.1",
      port: 4000,
      token: undefined,
      tokenReads: false,
      allowAnonymous: false,
    });
    expect(c.logs).toEqual({ level: "info", pretty: false });
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.retry)).toBe(true);
  });

  it("reads overrides and coerces numbers", () => {
    const c = readConfig({ RETRY_DELAY_MS: "1500", MAX_ATTEMPTS: "7", GATEWAY_TOKEN_READS: "true" });
    expect(c.retry.delayMs).toBe(1500);
    expect(c.retry.maxAttempts).toBe(7);
    expect(c.gateway.tokenReads).toBe(true);
  });

  it("names every bad variable and the rule it broke", () => {
    let caught: unknown;
    try {
      readConfig({ RETRY_DELAY_MS: "soon", MAX_ATTEMPTS: "0", REDIS_URL: "http://x", GATEWAY_TOKEN: "short" });
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    const { problems, message } = caught as ConfigError;
    expect(problems).toHaveLength(4);
    expect(message).toContain('RETRY_DELAY_MS="soon": must be a number');
    expect(message).toContain('MAX_ATTEMPTS="0": must be >= 1');
    expect(message).toContain("REDIS_URL");
    expect(message).toContain("must be a URL with scheme redis or rediss");
    // Secrets are never echoed back.
    expect(message).toContain("GATEWAY_TOKEN=(hidden)");
    expect(message).not.toContain("short");
  });

  it("rejects unknown enum values", () => {
    expect(() => readConfig({ RETRY_BACKOFF: "linear" })).toThrow(/RETRY_BACKOFF/);
    expect(() => readConfig({ AMQP_QUEUE_TYPE: "stream" })).toThrow(/AMQP_QUEUE_TYPE/);
  });

  it("reads AMQP_URL as a list of nodes, checks each, and defaults a cluster to quorum queues", () => {
    const one = readConfig({ AMQP_URL: "amqp://u:p@10.0.0.1:5672" });
    expect(one.broker.urls).toEqual(["amqp://u:p@10.0.0.1:5672"]);
    expect(one.broker.queueType).toBe("classic");
    const three = readConfig({ AMQP_URL: "amqp://a:5672, amqp://b:5672,amqps://c:5671" });
    expect(three.broker.urls).toEqual(["amqp://a:5672", "amqp://b:5672", "amqps://c:5671"]);
    expect(three.broker.queueType).toBe("quorum");
    // An explicit type wins over the default.
    expect(readConfig({ AMQP_URL: "amqp://a,amqp://b", AMQP_QUEUE_TYPE: "classic" }).broker.queueType).toBe("classic");
    let caught: unknown;
    try {
      readConfig({ AMQP_URL: "amqp://a:5672,http://b:15672,," });
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    const { problems } = caught as ConfigError;
    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain("AMQP_URL");
    expect(problems[0]).toContain('node 2 ("http://b:15672") must be a URL with scheme amqp or amqps');
    expect(problems[0]).toContain("node 3 is empty");
  });

  it("documents every setting in .env.example", () => {
    const documented = new Set([...example.matchAll(/^#?\s*([A-Z][A-Z0-9_]+)=/gm)].map((m) => m[1]));
    expect([...documented].sort()).toEqual([...ENV_KEYS].sort());
  });
});
