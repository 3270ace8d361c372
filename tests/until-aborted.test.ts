// untilAborted, which ends every subscription's stream at shutdown, over a long stream: what it
// keeps per item must not outlive the item (a subscription delivers the pipeline's every event).
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

import { describe, expect, it } from "vitest";

import { untilAborted } from "../gateway/src/drain.ts";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

async function* counting(n: number) {
  for (let i = 0; i < n; i++) yield { i, payload: `event ${i}` };
}

const heapAfterGc = () => {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
};

describe("untilAborted", () => {
  it("keeps nothing per item of a long stream", async () => {
    const stop = new AbortController();
    const stream = untilAborted(counting(400_000), stop.signal);
    const before = heapAfterGc();
    let seen = 0;
    for await (const _ of stream) seen++;
    const grown = heapAfterGc() - before;
    expect(seen).toBe(400_000);
    // Leaking a promise reaction per item is ~200 bytes each: 80 MB here.
    expect(grown).toBeLessThan(10 * 1024 * 1024);
  });

  it("ends the stream while it waits for an item, once the signal aborts", async () => {
    const stop = new AbortController();
    const never = (async function* () {
      await new Promise(() => {});
      yield 1;
    })();
    const stream = untilAborted(never, stop.signal);
    const next = stream.next();
    stop.abort();
    await expect(next).resolves.toEqual({ done: true, value: undefined });
    await expect(stream.next()).resolves.toEqual({ done: true, value: undefined });
  });
});
