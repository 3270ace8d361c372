// The processes' logs: every line a process logs is in its output, in order, however it exits.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

import { afterEach, describe, expect, it } from "vitest";

import { childEnvironment } from "../common/config.ts";
import { ROOT } from "./support/world/launcher.ts";

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

describe("logger", () => {
  it("has written every line, in order, when the process exits right after logging", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "logger-"));
    dirs.push(dir);
    const out = path.join(dir, "out.log");
    // As a shutdown ends: lines logged between awaits, then process.exit, with stdout a file (as
    // the launcher gives it) and the one libuv worker busy, so that a write handed to it is still
    // waiting when the process exits.
    const script = `
      import { pbkdf2 } from "node:crypto";
      import { readConfig } from ${JSON.stringify(path.join(ROOT, "common/config.ts"))};
      import { createLogger } from ${JSON.stringify(path.join(ROOT, "common/logger.ts"))};
      pbkdf2("busy", "worker", 1_000_000, 32, "sha256", () => undefined);
      const logger = createLogger(readConfig(), "logger-test");
      for (let i = 0; i < 100; i++) {
        logger.info({ i }, "released");
        await Promise.resolve();
      }
      process.exit(0);`;
    const fd = fs.openSync(out, "a");
    const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], {
      cwd: ROOT,
      stdio: ["ignore", fd, "pipe"],
      env: childEnvironment({ LOG_LEVEL: "info", LOG_PRETTY: "false", UV_THREADPOOL_SIZE: "1" }),
    });
    fs.closeSync(fd);
    expect(r.status, r.stderr.toString()).toBe(0);
    const lines = fs
      .readFileSync(out, "utf8")
      .split("\n")
      .filter(Boolean)
      .map((l) => (JSON.parse(l) as { i: number }).i);
    expect(lines).toEqual(Array.from({ length: 100 }, (_, i) => i));
  });
});
