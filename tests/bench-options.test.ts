// The bench's command line (bench/options.ts, parsed by node:util parseArgs).
import { describe, expect, it } from "vitest";

import { parseOptions, UsageError } from "../bench/options.ts";

const usageError = (argv: string[]) => {
  try {
    parseOptions(argv);
  } catch (err) {
    if (err instanceof UsageError) return err.message;
    throw err;
  }
  throw new Error(`${argv.join(" ")} was accepted`);
};

describe("bench options", () => {
  it("reads every kind of flag: booleans, values, repeatable settings and node arguments", () => {
    const o = parseOptions([
      "--quick",
      "--n=5",
      "--consumers",
      "2,1,2",
      "--live-subscribers",
      "3",
      "--only",
      "happy,read",
      "--skip",
      "read",
      "--consumer-env",
      "CONSUMER_BATCH_SIZE=1000",
      "--consumer-env",
      "LOG_LEVEL=a=b",
      "--gateway-node-args",
      "--max-old-space-size=128 --import tsx",
      "--label",
      "x",
    ]);
    expect(o).toMatchObject({
      quick: true,
      n: 5,
      consumerCounts: [1, 2],
      liveSubscribers: 3,
      consumerEnv: { CONSUMER_BATCH_SIZE: "1000", LOG_LEVEL: "a=b" },
      gatewayEnv: {},
      gatewayNodeArgs: ["--max-old-space-size=128", "--import", "tsx"],
      label: "x",
      keep: false,
      // --quick sizes where no flag gives one.
      mixN: 4_000,
    });
    expect([...o.steps]).toEqual(["happy"]);
  });

  it("answers --help, -h and every bad command line with the usage", () => {
    for (const argv of [["--help"], ["-h"]]) expect(usageError(argv)).toMatch(/^usage: npm run bench -- \[options\]/);
    const cases: [string[], RegExp][] = [
      [["--bogus"], /Unknown option '--bogus'/],
      [["--n"], /'--n <value>' argument missing/],
      [["stray"], /Unexpected argument 'stray'/],
      [["--keep=yes"], /'--keep' does not take an argument/],
      [["--n", "0"], /--n must be a positive whole number, got "0"/],
      [["--live-subscribers", "0"], /--live-subscribers must be a positive whole number, got "0"/],
      [["--only", "happy,nope"], /unknown step nope/],
      [["--gateway-env", "lower=1"], /expected KEY=VALUE, got "lower=1"/],
    ];
    for (const [argv, message] of cases) {
      const text = usageError(argv);
      expect(text, argv.join(" ")).toMatch(message);
      expect(text, argv.join(" ")).toContain("usage: npm run bench");
    }
  });
});
