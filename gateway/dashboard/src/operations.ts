// Every GraphQL operation the dashboard sends, with the shape of its answer.
// Panels query separately so that one missing or failing field degrades one panel only.

export const SYSTEMS = ["SYSTEM1", "SYSTEM2"] as const;
export type System = (typeof SYSTEMS)[number];

export type ProcessingStatus = "SUCCEEDED" | "RETRY_SCHEDULED" | "DEAD_LETTERED" | "REJECTED" | "REDRIVEN" | "DISCARDED";

export const OVERVIEW = /* GraphQL */ `
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
`;
export interface Overview {
  cursors: { system: System; lastPublishedId: number; pending: number }[];
  system1: { totalCount: number };
  system2: { totalCount: number };
}

export const PIPELINE_STATS = /* GraphQL */ `
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
`;
export interface QueueStats {
  name: string;
  messages: number;
  consumers: number;
}
export interface SystemStats {
  system: System;
  sourceRows: number;
  published: number;
  succeeded: number;
  deadLettered: number;
  inFlight: number;
  endputRows: number;
}
export interface PipelineStats {
  pipelineStats: { queues: QueueStats[]; systems: SystemStats[] };
}

export const DEAD_LETTERS = /* GraphQL */ `
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
`;
export interface DeadLetter {
  messageId: string;
  /** Null for a REJECTED message that could not be read. */
  system: System | null;
  orderId: number | null;
  reason: string;
  attempts: number;
  round: number;
  deadAt: string | null;
}
export interface DeadLetters {
  deadLetters: DeadLetter[];
}

export const REDRIVE = /* GraphQL */ `
  mutation DashboardRedrive($messageIds: [ID!], $dryRun: Boolean) {
    redriveDeadLetters(messageIds: $messageIds, dryRun: $dryRun) {
      matched
      moved
      dryRun
    }
  }
`;
export interface RedriveResult {
  matched: number;
  moved: number;
  dryRun: boolean;
}
export interface Redrive {
  redriveDeadLetters: RedriveResult;
}

export const DEAD_LETTER_GROUPS = /* GraphQL */ `
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
`;
export interface DeadLetterGroup {
  /** Null for messages rejected because they could not be read. */
  system: System | null;
  reason: string;
  count: number;
  oldestDeadAt: string;
  newestDeadAt: string;
  sampleMessageId: string;
}
export interface DeadLetterGroups {
  deadLetterGroups: DeadLetterGroup[];
}

export const REDRIVE_GROUP = /* GraphQL */ `
  mutation DashboardRedriveGroup($system: System, $reason: String!) {
    redriveDeadLetters(system: $system, reason: $reason) {
      matched
      moved
      dryRun
    }
  }
`;

export const DISCARD_GROUP = /* GraphQL */ `
  mutation DashboardDiscardGroup($system: System, $reason: String!) {
    discardDeadLetters(system: $system, reason: $reason) {
      matched
      discarded
      dryRun
    }
  }
`;
export interface Discard {
  discardDeadLetters: { matched: number; discarded: number; dryRun: boolean };
}

export const SEED = /* GraphQL */ `
  mutation DashboardSeed($system: System!, $count: Int!) {
    seedOrders(system: $system, count: $count) {
      inserted
      firstId
      lastId
    }
  }
`;
export interface Seed {
  seedOrders: { inserted: number; firstId: number | null; lastId: number | null };
}

export const PUBLISH = /* GraphQL */ `
  mutation DashboardPublish($system: System!) {
    publishPending(system: $system) {
      published
      fromId
      toId
      cursor
      waitingOnTransactions
    }
  }
`;
export interface Publish {
  publishPending: {
    published: number;
    fromId: number | null;
    toId: number | null;
    cursor: number;
    waitingOnTransactions: boolean;
  };
}

export const MESSAGE_HISTORY = /* GraphQL */ `
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
`;
export interface Attempt {
  attempt: number;
  round: number;
  status: ProcessingStatus;
  error: string | null;
  processedAt: string;
  durationMs: number | null;
  consumerId: string;
  traceId: string | null;
  traceUrl: string | null;
}
export interface MessageHistory {
  messageHistory: Attempt[];
}

export const PROCESSING_EVENTS = /* GraphQL */ `
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
`;
export interface ProcessingEvent {
  messageId: string;
  system: System | null;
  orderId: number | null;
  attempt: number;
  round: number;
  status: ProcessingStatus;
  error: string | null;
  at: string;
}
