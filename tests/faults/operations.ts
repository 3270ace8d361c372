// The operations the fault scenarios send themselves, typed from schema.graphql.
import { graphql } from "../../gateway/client/graphql.ts";

export const SEED = graphql(`
  mutation ($system: System!, $count: Int!) {
    seedOrders(system: $system, count: $count) {
      inserted
      firstId
      lastId
    }
  }
`);

export const PUBLISH = graphql(`
  mutation ($system: System!, $limit: Int) {
    publishPending(system: $system, limit: $limit) {
      published
      cursor
      fromId
      toId
    }
  }
`);

export const CURSORS = graphql(`
  query {
    cursors {
      system
      lastPublishedId
      pending
    }
  }
`);
