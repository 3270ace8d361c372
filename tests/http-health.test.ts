// Readiness probes over HTTP: however many probes arrive together they share one run of the
// dependency checks, and a run answers the probes of the next second; a failing check is named.
import type { AddressInfo } from "node:net";

import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";

import { type Check, createHealthServer, READINESS_TTL_MS } from "../common/http-health.ts";

let close: (() => void) | undefined;
afterEach(() => close?.());

async function serve(checks: Check[]) {
  const server = createHealthServer({ checks, registry: new Registry() });
  server.listen(0, "127.0.0.1");
  await new Promise((r) => server.once("listening", r));
  close = () => server.close();
  const { port } = server.address() as AddressInfo;
  return async () => {
    const res = await fetch(`http://127.0.0.1:${port}/readyz`);
    return { status: res.status, body: (await res.json()) as { ready: boolean; checks: { name: string; ok: boolean }[] } };
  };
}

describe("readiness probes", () => {
  it("share one run of the checks between concurrent probes and the probes of the next second", async () => {
    let runs = 0;
    let down = false;
    const probe = await serve([
      {
        name: "store",
        check: async () => {
          runs++;
          await new Promise((r) => setTimeout(r, 50));
          if (down) throw new Error("store down");
        },
      },
    ]);
    const answers = await Promise.all(Array.from({ length: 100 }, probe));
    expect(answers.every((a) => a.status === 200)).toBe(true);
    expect(runs).toBe(1);
    expect((await probe()).status).toBe(200);
    expect(runs).toBe(1);

    // Once the last run is older than the TTL, the next probe runs the checks again.
    down = true;
    await new Promise((r) => setTimeout(r, READINESS_TTL_MS + 50));
    const after = await probe();
    expect(runs).toBe(2);
    expect(after.status).toBe(503);
    expect(after.body.checks).toEqual([{ name: "store", ok: false, error: "store down" }]);
  });
});
