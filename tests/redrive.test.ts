// Redriving dead letters through the windows a crash or a concurrent scan opens.
import { afterEach, beforeEach, describe, expect, it } from "vitest";

import { CONTRACT_VERSION, HEADERS, type OrderMessage } from "../common/contract.ts";
import { deadLetterScanLockKey } from "../common/keys.ts";
import { graphql } from "../gateway/client/graphql.ts";
import { redriveDeadLetters } from "../gateway/src/services/dead-letters.ts";
import { orderMessageId } from "../gateway/src/services/message-id.ts";
import { createTestEnv, type TestEnv } from "./support/env.ts";
import { logEntry } from "./support/log-entry.ts";
import { typedGql } from "./typed-gql.ts";

let env: TestEnv;
beforeEach(async () => {
  env = await createTestEnv({ MAX_ATTEMPTS: "2" });
});
afterEach(async () => {
  await env.cleanup();
});

const gql = typedGql(() => env);

const REDRIVE = graphql(`
  mutation ($dryRun: Boolean) {
    redriveDeadLetters(dryRun: $dryRun) {
      matched
      moved
      alreadyRedriven
      dryRun
    }
  }
`);

/** A false order dead-lettered after its two attempts, as the consumer leaves it: in the DLQ, its history retained. */
async function deadLetter(orderId: number): Promise<string> {
  const messageId = orderMessageId("SYSTEM1", orderId);
  const message: OrderMessage = {
    messageId,
    source: { system: "SYSTEM1", orderId },
    order: { product: "Lamp", price: "9.99", securityCheck: false },
    requiredAttempts: 3,
    publishedAt: new Date().toISOString(),
  };
  await env.broker.withChannel(async (ch) => {
    ch.sendToQueue(env.broker.topology.dlq, Buffer.from(JSON.stringify(message)), {
      persistent: true,
      messageId,
      contentType: "application/json",
      headers: {
        [HEADERS.contractVersion]: CONTRACT_VERSION,
        [HEADERS.attempt]: 2,
        [HEADERS.round]: 0,
        [HEADERS.deadReason]: "max-attempts",
        [HEADERS.deadAttempts]: 2,
        [HEADERS.deadAt]: new Date().toISOString(),
      },
    });
    await ch.checkQueue(env.broker.topology.dlq);
  });
  const now = new Date();
  const doc = (attempt: number, status: "RETRY_SCHEDULED" | "DEAD_LETTERED") =>
    logEntry({
      messageId,
      attempt,
      status,
      requiredAttempts: 3,
      maxAttempts: 2,
      orderId,
      publishedAt: now,
      order: message.order,
      error: `attempt ${attempt} failed`,
      processedAt: now,
      expiresAt: status === "DEAD_LETTERED" ? null : env.log.expiryFrom(now),
      retained: status === "DEAD_LETTERED",
    });
  await env.log.insert([doc(1, "RETRY_SCHEDULED"), doc(2, "DEAD_LETTERED")]);
  await env.log.retain([messageId]);
  return messageId;
}

const steps = async (messageId: string) => (await env.log.history(messageId)).map((d) => [d.round, d.attempt, d.status]);

describe("redriveDeadLetters", () => {
  it("acks a copy a gateway already redrove before it died, without another round, and keeps its history meanwhile", async () => {
    const { primary, dlq } = env.broker.topology;
    const messageId = await deadLetter(7);

    // The gateway dies after round 1 is published and logged, before the DLQ copy is acked.
    await expect(
      redriveDeadLetters({
        filter: {},
        broker: env.broker,
        log: env.log,
        redis: env.redis,
        config: env.config,
        logger: env.logger,
        beforeAck: () => Promise.reject(new Error("gateway died")),
      }),
    ).rejects.toThrow("gateway died");
    expect(await env.queueDepth(primary)).toBe(1);
    expect(await env.queueDepth(dlq)).toBe(1);

    // Round 0 is still in the DLQ: nothing of its history expires, however late the sweep.
    const later = new Date(Date.now() + 2 * env.config.mongo.ttlSeconds * 1000);
    await env.log.sweep(later);
    expect(await steps(messageId)).toEqual([
      [0, 1, "RETRY_SCHEDULED"],
      [0, 2, "DEAD_LETTERED"],
      [1, 0, "REDRIVEN"],
    ]);

    // A second redrive sees that round 0 became round 1 and only acks the copy.
    const dry = await gql(REDRIVE, { dryRun: true });
    expect(dry.data).toEqual({ redriveDeadLetters: { matched: 1, moved: 0, alreadyRedriven: 1, dryRun: true } });
    const again = await gql(REDRIVE);
    expect(again.data).toEqual({ redriveDeadLetters: { matched: 1, moved: 0, alreadyRedriven: 1, dryRun: false } });
    expect(await env.queueDepth(primary)).toBe(1);
    expect(await env.queueDepth(dlq)).toBe(0);
    expect(await steps(messageId)).toEqual([
      [0, 1, "RETRY_SCHEDULED"],
      [0, 2, "DEAD_LETTERED"],
      [1, 0, "REDRIVEN"],
    ]);
  });

  it("walks only the dead letters there when it began: copies that arrive meanwhile wait for the next walk", async () => {
    const { primary, dlq } = env.broker.topology;
    for (const id of [1, 2]) await deadLetter(id);
    // As a consumer dead-letters again what a redrive sent back, while the redrive still walks.
    let arrivals = 0;
    const result = await redriveDeadLetters({
      filter: {},
      broker: env.broker,
      log: env.log,
      redis: env.redis,
      config: env.config,
      logger: env.logger,
      beforeAck: async () => {
        if (arrivals < 2) await deadLetter(100 + ++arrivals);
      },
    });
    expect(arrivals).toBe(2);
    expect(result).toEqual({ matched: 2, moved: 2, alreadyRedriven: 0, dryRun: false });
    expect(await env.queueDepth(primary)).toBe(2);
    expect(await env.queueDepth(dlq)).toBe(2);
  });

  it("counts what a concurrent peek holds: a dry run waits for the scan in progress", async () => {
    const { dlq } = env.broker.topology;
    for (const id of [1, 2, 3]) await deadLetter(id);
    expect(await env.queueDepth(dlq)).toBe(3);

    // A peek in progress: it holds the scan lock and two dead letters unacked on its channel.
    const key = deadLetterScanLockKey(env.config);
    expect(await env.redis.set(key, "peek", "PX", 30_000, "NX")).toBe("OK");
    let settled = false;
    const held = await env.broker.withChannel(async (ch) => {
      expect(await ch.get(dlq, { noAck: false })).not.toBe(false);
      expect(await ch.get(dlq, { noAck: false })).not.toBe(false);
      const dry = gql(REDRIVE, { dryRun: true }).finally(() => (settled = true));
      await new Promise((r) => setTimeout(r, 1000));
      expect(settled).toBe(false);
      return { dry };
    });
    // The peek's channel is closed, its messages back in the queue; it releases the lock.
    await env.redis.del(key);
    const result = await held.dry;
    expect(result.errors).toBeUndefined();
    expect(result.data).toEqual({ redriveDeadLetters: { matched: 3, moved: 0, alreadyRedriven: 0, dryRun: true } });
    expect(await env.queueDepth(dlq)).toBe(3);
  });
});
