// The typed `graphql()` every client of the gateway writes its operations with (dashboard,
// CLI, bench, tests). gql.tada infers each document's result and variables from
// graphql-env.d.ts, the introspection of the committed schema.graphql, so a schema change
// that breaks a client fails `npm run typecheck`. `npm run schema:print` and `typecheck`
// regenerate graphql-env.d.ts (`gql.tada generate-output`, configured in tsconfig.json).
import { initGraphQLTada } from "gql.tada";

import type { introspection } from "./graphql-env.d.ts";

export const graphql = initGraphQLTada<{
  introspection: introspection;
  // DateTime travels as an ISO-8601 string.
  scalars: { DateTime: string };
}>();

export type { ResultOf, TadaDocumentNode, VariablesOf } from "gql.tada";
