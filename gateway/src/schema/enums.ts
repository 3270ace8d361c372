import { PROCESSING_STATUSES, SYSTEMS } from "../../../common/contract.ts";
import { builder } from "./builder.ts";

export const SystemEnum = builder.enumType("System", {
  description: "A source system: each is a PostgreSQL database with an orders table",
  values: SYSTEMS,
});

export const ProcessingStatusEnum = builder.enumType("ProcessingStatus", {
  description:
    "The outcome of one processing attempt (REDRIVEN marks a dead letter sent back for another round, DISCARDED one removed from the dead-letter queue for good)",
  values: PROCESSING_STATUSES,
});
