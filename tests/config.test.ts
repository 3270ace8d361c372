import { readFileSync } from "node:fs";

import { describe, expect, it } from "vitest";

import { ConfigError, ENV_KEYS, readConfig } from "../common/config.ts";

describe("configuration", () => {
  it("defaults to the local services", () => {
    const c = readConfig({});
    expect(c.retry.delayMs).toBeGreaterThanOrEqual(0);
    expect(c.databases.system1).toMatch(/^postgresql:\/\//);
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
    const example = readFileSync(new URL("../.env.example", import.meta.url), "utf8");
    const documented = new Set([...example.matchAll(/^#?\s*([A-Z][A-Z0-9_]+)=/gm)].map((m) => m[1]));
    expect([...documented].sort()).toEqual([...ENV_KEYS].sort());
  });
});
