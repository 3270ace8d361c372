// Every GraphQL operation the dashboard sends; each answer's type is inferred from
// schema.graphql by gql.tada (../../client/graphql.ts), never written here.
// Panels query separately so that one missing or failing field degrades one panel only.
import { graphql, type ResultOf } from "../../client/graphql.ts";

export const OVERVIEW = graphql(`
  query DashboardOverview {
    cursors {
      system
      lastPublishedId
      pending
    }
    system1: orders(system: SYSTEM1, first: 1) {
      totalCount
    }
    system2: orders(system: SYSTEM2, first: 1) {
      totalCount
    }
  }
`);
export type Overview = ResultOf<typeof OVERVIEW>;
export type System = Overview["cursors"][number]["system"];

export const SYSTEMS = ["SYSTEM1", "SYSTEM2"] as const satisfies readonly System[];

export const PIPELINE_STATS = graphql(`
  query DashboardPipelineStats {
    pipelineStats {
      queues {
        name
        messages
        consumers
      }
      systems {
        system
        sourceRows
        published
        succeeded
        deadLettered
        inFlight
        endputRows
      }
    }
  }
`);
export type PipelineStats = ResultOf<typeof PIPELINE_STATS>["pipelineStats"];
export type QueueStats = PipelineStats["queues"][number];
export type SystemStats = PipelineStats["systems"][number];

export const DEAD_LETTERS = graphql(`
  query DashboardDeadLetters($first: Int) {
    deadLetters(first: $first) {
      messageId
      system
      orderId
      reason
      attempts
      round
      deadAt
    }
  }
`);
/** `system` is null for a REJECTED message that could not be read. */
export type DeadLetter = ResultOf<typeof DEAD_LETTERS>["deadLetters"][number];

export const REDRIVE = graphql(`
  mutation DashboardRedrive($messageIds: [ID!], $dryRun: Boolean) {
    redriveDeadLetters(messageIds: $messageIds, dryRun: $dryRun) {
      matched
      moved
      dryRun
    }
  }
`);
export type RedriveResult = ResultOf<typeof REDRIVE>["redriveDeadLetters"];

export const DEAD_LETTER_GROUPS = graphql(`
  query DashboardDeadLetterGroups {
    deadLetterGroups {
      system
      reason
      count
      oldestDeadAt
      newestDeadAt
      sampleMessageId
    }
  }
`);
/** `system` is null for messages rejected because they could not be read. */
export type DeadLetterGroup = ResultOf<typeof DEAD_LETTER_GROUPS>["deadLetterGroups"][number];

export const REDRIVE_GROUP = graphql(`
  mutation DashboardRedriveGroup($system: System, $reason: String!) {
    redriveDeadLetters(system: $system, reason: $reason) {
      matched
      moved
      dryRun
    }
  }
`);

export const DISCARD_GROUP = graphql(`
  mutation DashboardDiscardGroup($system: System, $reason: String!) {
    discardDeadLetters(system: $system, reason: $reason) {
      matched
      discarded
      dryRun
    }
  }
`);

export const RESTORE_GROUPS = graphql(`
  mutation DashboardRestoreGroups {
    restoreDeadLetterGroups {
      walked
      restored
      removed
      complete
    }
  }
`);

export const SEED = graphql(`
  mutation DashboardSeed($system: System!, $count: Int!) {
    seedOrders(system: $system, count: $count) {
      inserted
      firstId
      lastId
    }
  }
`);

export const PUBLISH = graphql(`
  mutation DashboardPublish($system: System!) {
    publishPending(system: $system) {
      published
      fromId
      toId
      cursor
      waitingOnTransactions
    }
  }
`);

export const MESSAGE_HISTORY = graphql(`
  query DashboardMessageHistory($messageId: ID!) {
    messageHistory(messageId: $messageId) {
      attempt
      round
      status
      error
      processedAt
      durationMs
      consumerId
      traceId
      traceUrl
    }
  }
`);
export type Attempt = ResultOf<typeof MESSAGE_HISTORY>["messageHistory"][number];

export const PROCESSING_EVENTS = graphql(`
  subscription DashboardEvents {
    processingEvents {
      messageId
      system
      orderId
      attempt
      round
      status
      error
      at
    }
  }
`);
export type ProcessingEvent = ResultOf<typeof PROCESSING_EVENTS>["processingEvents"];
export type ProcessingStatus = ProcessingEvent["status"];
