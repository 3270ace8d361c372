// The fault-injection suite (`make test-faults`): kills, restarts and outages
// against its own set of services. Scenario files run one at a time, in order.
import { defineConfig } from "vitest/config";
import { BaseSequencer, type TestSpecification } from "vitest/node";

class ByFileName extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    return [...files].sort((a, b) => a.moduleId.localeCompare(b.moduleId));
  }
}

export default defineConfig({
  // Same as vitest.config.ts: one copy of graphql for sources and dependencies.
  resolve: { alias: [{ find: /^graphql$/, replacement: "graphql/index.js" }] },
  test: {
    include: ["tests/faults/**/*.test.ts"],
    globalSetup: ["tests/faults/global-setup.ts"],
    fileParallelism: false,
    pool: "forks",
    maxWorkers: 1,
    testTimeout: 480_000,
    hookTimeout: 180_000,
    teardownTimeout: 60_000,
    sequence: { sequencer: ByFileName },
    reporters: ["default"],
    allowOnly: false,
  },
});
