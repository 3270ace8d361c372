// What the steps of one run measured, keyed by step: the input of the table, the
// target rows, the CPU lines and the JSON file.
import type { StepTiming } from "./batch-steps.ts";
import type { PipelineResult, PublishOnlyResult } from "./pipeline.ts";
import type { ProfileSummary } from "./profile.ts";
import type { RawResult } from "./raw-broker.ts";
import type { LogFill, ReadResult } from "./read-side.ts";

export interface Results {
  raw?: RawResult;
  /** The raw baseline again, right before the happy path it is compared with. */
  rawAgain?: RawResult;
  happy?: PipelineResult;
  mix?: PipelineResult;
  scaling?: PipelineResult[];
  /** A happy run with live-event subscribers reading every event. */
  live?: PipelineResult;
  publish?: PublishOnlyResult;
  logFill?: Omit<LogFill, "sampleMessageIds">;
  read?: ReadResult;
  logGrowth?: PipelineResult;
  profile?: { run: PipelineResult; summaries: ProfileSummary[]; steps: StepTiming[] };
}

/** Step name -> the first line of what it threw. */
export type StepErrors = Record<string, string>;
