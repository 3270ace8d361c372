// The consumer's health server: however many readiness probes arrive together they share one run
// of the dependency checks, and a run answers the probes of the next second (a failing check is
// named); the connections it holds are bounded.
import net, { type AddressInfo } from "node:net";

import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";

import { type Check, createHealthServer, HEALTH_MAX_CONNECTIONS, READINESS_TTL_MS } from "../common/http-health.ts";
import { idleConnection } from "./support/idle-connection.ts";

let close: (() => void) | undefined;
let lastPort = 0;
const sockets: net.Socket[] = [];
afterEach(() => {
  for (const s of sockets.splice(0)) s.destroy();
  close?.();
});

/** Opens a connection that sends nothing, closed after the test. */
async function idle(port: number): Promise<net.Socket> {
  const socket = await idleConnection(port);
  sockets.push(socket);
  return socket;
}

async function serve(checks: Check[]) {
  const server = createHealthServer({ checks, registry: new Registry() });
  server.listen(0, "127.0.0.1");
  await new Promise((r) => server.once("listening", r));
  close = () => server.close();
  const { port } = server.address() as AddressInfo;
  lastPort = port;
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

  it(`holds at most ${HEALTH_MAX_CONNECTIONS} connections, and serves again once they go`, async () => {
    const probe = await serve([]);
    const held = [];
    for (let i = 0; i < HEALTH_MAX_CONNECTIONS; i++) held.push(await idle(lastPort));
    const extra = await idle(lastPort);
    await new Promise((resolve) => extra.once("close", resolve)); // dropped by the server
    for (const s of held) s.destroy();
    await new Promise((r) => setTimeout(r, 200));
    expect((await probe()).status).toBe(200);
  });
});
