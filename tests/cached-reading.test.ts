// The readings behind the gateway's scrape-time gauges: one store reading serves the scrapes of
// its interval, concurrent scrapes share the reading in flight, and a reading that fails or
// hangs leaves the gauge unset instead of failing or holding up the scrape.
import { describe, expect, it } from "vitest";

import { cachedReading } from "../common/cached-reading.ts";

describe("cachedReading", () => {
  it("reads once per interval and shares the reading in flight between concurrent scrapes", async () => {
    let reads = 0;
    const reading = cachedReading(async () => ++reads, 60_000, 1_000);
    expect(await Promise.all([reading(), reading(), reading()])).toEqual([1, 1, 1]);
    expect(await reading()).toBe(1);
    expect(reads).toBe(1);
  });

  it("reads again once the last reading is older than its interval", async () => {
    let reads = 0;
    const reading = cachedReading(async () => ++reads, 0, 1_000);
    expect(await reading()).toBe(1);
    expect(await reading()).toBe(2);
  });

  it("answers undefined for a failed reading and reads again at the next scrape", async () => {
    let reads = 0;
    const reading = cachedReading(async () => {
      if (++reads === 1) throw new Error("store down");
      return reads;
    });
    expect(await reading()).toBeUndefined();
    expect(await reading()).toBe(2);
  });

  it("answers undefined when the reading outlasts the timeout, and keeps it for the next scrape", async () => {
    let release!: (n: number) => void;
    let reads = 0;
    const reading = cachedReading(
      () => {
        reads++;
        return new Promise<number>((r) => (release = r));
      },
      60_000,
      20,
    );
    expect(await reading()).toBeUndefined();
    release(42);
    expect(await reading()).toBe(42);
    expect(reads).toBe(1);
  });
});
