// The one place a process exits: configuration errors and start-up failures are
// printed (naming the variable or the dependency) and end the process with 1.
import { type Config, ConfigError, readConfig } from "./config.ts";
import { errorMessage } from "./errors.ts";

export function runMain(name: string, main: (config: Config) => Promise<void>): void {
  let config: Config;
  try {
    config = readConfig();
  } catch (err) {
    console.error(`${name}: ${err instanceof ConfigError ? err.message : errorMessage(err)}`);
    process.exit(1);
  }
  main(config).catch((err) => {
    console.error(`${name}: failed to start: ${errorMessage(err)}`);
    process.exit(1);
  });
}
