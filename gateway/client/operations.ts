// The operations the bench, the fault suite and the tests drive the gateway with, each written
// once (the dashboard's and the CLI's are in their own folders). Answers are typed from
// schema.graphql through graphql().
import { graphql, type ResultOf } from "./graphql.ts";

export const SEED = graphql(`
  mutation Seed($system: System!, $count: Int!, $ratio: Float) {
    seedOrders(system: $system, count: $count, securityCheckRatio: $ratio) {
      inserted
      firstId
      lastId
      securityCheckTrue
    }
  }
`);

export const PUBLISH = graphql(`
  mutation Publish($system: System!, $limit: Int) {
    publishPending(system: $system, limit: $limit) {
      system
      published
      fromId
      toId
      cursor
      waitingOnTransactions
    }
  }
`);
export type PublishResult = ResultOf<typeof PUBLISH>["publishPending"];

export const CURSORS = graphql(`
  query Cursors {
    cursors {
      system
      lastPublishedId
      pending
    }
  }
`);

/** Everything the pipeline reconciles: queue depths, each system's counts, attempts by outcome. */
export const PIPELINE_STATS = graphql(`
  query PipelineStats {
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
      attempts {
        status
        count
      }
    }
  }
`);
