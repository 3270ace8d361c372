// Runs the Prisma CLI for both schemas: `generate` writes the clients,
// `migrate` applies the committed migrations to system1, system2 and endput.
import { spawn, spawnSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { childEnvironment, readConfig } from "../common/config.ts";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const bin = path.join(root, "node_modules", ".bin");

function cliEnv(databaseUrl: string): Record<string, string> {
  const env = childEnvironment({ DATABASE_URL: databaseUrl, PRISMA_HIDE_UPDATE_MESSAGE: "1", CHECKPOINT_DISABLE: "1" });
  env.PATH = `${bin}${path.delimiter}${path.dirname(process.execPath)}${path.delimiter}${env.PATH ?? ""}`;
  return env;
}

function prisma(args: string[], databaseUrl: string): void {
  const r = spawnSync(path.join(bin, "prisma"), args, { cwd: root, env: cliEnv(databaseUrl), encoding: "utf8" });
  if (r.status !== 0) {
    const out = `${r.stdout ?? ""}${r.stderr ?? ""}`.trim();
    throw new Error(`prisma ${args.join(" ")} failed (${new URL(databaseUrl).pathname.slice(1)}):\n${out}`);
  }
}

function prismaAsync(args: string[], databaseUrl: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(path.join(bin, "prisma"), args, {
      cwd: root,
      env: cliEnv(databaseUrl),
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (out += d));
    child.on("error", reject);
    child.on("close", (code) =>
      code === 0
        ? resolve()
        : reject(new Error(`prisma ${args.join(" ")} failed (${new URL(databaseUrl).pathname.slice(1)}):\n${out.trim()}`)),
    );
  });
}

/** Applies the committed migrations; the three databases in parallel (each CLI run idles ~10 s before exiting). */
export async function migrate(urls: { system1: string; system2: string; endput: string }): Promise<void> {
  await Promise.all([
    prismaAsync(["migrate", "deploy", "--config", "prisma/source.config.ts"], urls.system1),
    prismaAsync(["migrate", "deploy", "--config", "prisma/source.config.ts"], urls.system2),
    prismaAsync(["migrate", "deploy", "--config", "prisma/endput.config.ts"], urls.endput),
  ]);
}

export function generate(): void {
  // The CLI needs some DATABASE_URL even to generate; nothing connects to it.
  prisma(["generate", "--config", "prisma/source.config.ts"], "postgresql://generate@127.0.0.1/none");
  prisma(["generate", "--config", "prisma/endput.config.ts"], "postgresql://generate@127.0.0.1/none");
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const command = process.argv[2];
  try {
    if (command === "generate") {
      generate();
      console.log("[prisma] clients generated");
    } else if (command === "migrate") {
      const { databases } = readConfig();
      await migrate(databases);
      console.log("[prisma] migrations applied to system1, system2 and endput");
    } else {
      console.error("usage: tsx scripts/prisma.ts generate|migrate");
      process.exit(2);
    }
  } catch (err) {
    console.error(`[prisma] ${(err as Error).message}`);
    process.exit(1);
  }
}
