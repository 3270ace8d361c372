// A client that stands for one on another host: scenario 6b's sender of costly requests. It runs
// as a process of its own, in a session of its own whose scheduling group it raises where it may
// (root, as in CI), so that the pipeline draining on this host delays neither its sends nor its
// reads, and the times it reports are the gateway's. Elsewhere it runs at the default priority
// and reports its own event-loop stalls beside the times.
//
//   node tests/faults/support/remote-client.ts <port> <perKind> <maxBodyBytes> [gatewayPid]
//
// sends costlyRequests(perKind, maxBodyBytes) one at a time and prints one JSON line, a RemoteRun.
// Given the gateway's pid, each answer also carries what the gateway's main thread and the
// client's own did meanwhile (Linux schedstat): how long each ran and waited for a CPU.
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { fileURLToPath } from "node:url";

import pino from "pino";

import { setCpuPriority } from "../../../common/priority.ts";
import { autogroupOf } from "../../support/scheduling.ts";
import { costlyRequests } from "./hostile.ts";
import { sendTimed, type TimedAnswer } from "./send.ts";

export interface RemoteRun {
  answers: TimedAnswer[];
  /** Requests that got no HTTP answer at all. */
  failures: string[];
  seconds: number;
  /** The longest its own event loop was held up, while it sent. */
  loopMaxMs: number;
  /** Its niceness and its scheduling group (none without autogroup), as it ran. */
  nice: number;
  autogroup?: { group: string; nice: number };
}

/** The niceness the client asks for: the gateway's default, so that neither waits for the other. */
const CLIENT_NICE = -5;

/** Runs the client against the gateway on `port`; resolves with what it measured. */
export function runRemoteClient(port: number, perKind: number, maxBodyBytes: number, gatewayPid?: number): Promise<RemoteRun> {
  const script = fileURLToPath(import.meta.url);
  const args = [port, perKind, maxBodyBytes, ...(gatewayPid ? [gatewayPid] : [])].map(String);
  const child = spawn(process.execPath, [script, ...args], {
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stdout.on("data", (c: Buffer) => (out += c.toString("utf8")));
  child.stderr.on("data", (c: Buffer) => (err += c.toString("utf8")));
  return new Promise((resolve, reject) => {
    child.once("error", reject);
    child.once("exit", (code, signal) => {
      if (code === 0) resolve(JSON.parse(out) as RemoteRun);
      else reject(new Error(`remote client ended with ${signal ?? `code ${code}`}: ${err.slice(-2000)}`));
    });
  });
}

async function main(argv: string[]): Promise<void> {
  const [port, perKind, maxBodyBytes, gatewayPid] = argv.map(Number);
  if (!port || !perKind || !maxBodyBytes) throw new Error("usage: remote-client.ts <port> <perKind> <maxBodyBytes> [gatewayPid]");
  setCpuPriority(CLIENT_NICE, pino({ level: "warn" }, pino.destination(2)));
  const loop = monitorEventLoopDelay({ resolution: 10 });
  loop.enable();
  const answers: TimedAnswer[] = [];
  const failures: string[] = [];
  const t0 = performance.now();
  for (const r of costlyRequests(perKind, maxBodyBytes)) {
    try {
      answers.push(await sendTimed(port, r, gatewayPid || undefined));
    } catch (e) {
      failures.push(`${r.kind}: ${(e as Error).message}`);
    }
  }
  loop.disable();
  const run: RemoteRun = {
    answers,
    failures,
    seconds: Math.round(performance.now() - t0) / 1000,
    loopMaxMs: Math.round(loop.max / 1e6),
    nice: os.getPriority(),
    autogroup: fs.existsSync("/proc/self/autogroup") ? autogroupOf(process.pid) : undefined,
  };
  process.stdout.write(`${JSON.stringify(run)}\n`);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await main(process.argv.slice(2));
