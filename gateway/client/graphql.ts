// The typed `graphql()` every client of the gateway writes its operations with (dashboard,
// CLI, bench, tests). gql.tada infers each document's result and variables from
// graphql-env.d.ts, the introspection of the committed schema.graphql. `npm run typecheck`
// regenerates graphql-env.d.ts (`gql.tada generate-output`, configured in tsconfig.json),
// then `gql.tada check` validates every document against it (the inference alone lets an
// unknown field through), then tsc checks how each answer is used: a schema change that
// breaks a client fails one of the two.
import { initGraphQLTada } from "gql.tada";

import type { introspection } from "./graphql-env.d.ts";

export const graphql = initGraphQLTada<{
  introspection: introspection;
  // DateTime travels as an ISO-8601 string.
  scalars: { DateTime: string };
}>();

export type { ResultOf, TadaDocumentNode, VariablesOf } from "gql.tada";
