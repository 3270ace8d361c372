// The operations the CLI sends, typed from schema.graphql (a test checks they stay within the gateway's limits).
import { graphql } from "../../client/graphql.ts";

export const WATCH = graphql(`
  subscription Watch($system: System, $status: ProcessingStatus) {
    processingEvents(system: $system, status: $status) {
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
