// `make bench` / `npm run bench -- [--quick] [--n N] ...`: measures the pipeline
// against the raw broker on the developer's running services, in isolated
// databases, queues, keys and Mongo databases that it removes at the end.
// Prints a Markdown table (stdout), progress (stderr), and writes
// bench/results/<timestamp>.json and bench/results/latest.json.
import path from "node:path";

import { createContext } from "./context.ts";
import { wakeCostUs } from "./machine.ts";
import { type Options, parseOptions, UsageError } from "./options.ts";
import { killChildren, ROOT } from "./processes.ts";
import { progress } from "./progress.ts";
import { report, scaledNotes } from "./report.ts";
import type { Results, StepErrors } from "./results.ts";
import { runSteps } from "./steps.ts";
import { createWorld } from "./world.ts";

async function main(): Promise<number> {
  let options: Options;
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(err.message);
      return 2;
    }
    throw err;
  }
  const startedAt = new Date();
  const t0 = performance.now();
  const world = await createWorld({ keep: options.keep });
  const ctx = createContext(world, options);
  let cleaning: Promise<void> | undefined;
  const cleanup = () => (cleaning ??= world.cleanup());
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      progress(`${signal}: stopping children and removing the run's data`);
      killChildren();
      void cleanup().finally(() => process.exit(130));
    });
  }

  const wakeUs = await wakeCostUs();
  const scaled = scaledNotes(options);
  for (const n of scaled) progress(`scaled: ${n}`);
  progress(`steps: ${[...options.steps].join(", ")}; logs and profiles in ${path.relative(ROOT, ctx.outDir)}`);
  const results: Results = {};
  const errors: StepErrors = {};
  try {
    await runSteps(ctx, results, errors);
  } finally {
    killChildren();
    progress("cleaning up the run's databases, queues, keys and Mongo databases");
    await cleanup();
  }
  const seconds = (performance.now() - t0) / 1000;
  report({ runId: world.id, options, startedAt, seconds, scaled, wakeUs }, results, errors);
  return Object.keys(errors).length ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(`bench: ${(err as Error).stack ?? err}`);
    killChildren();
    process.exit(1);
  },
);
