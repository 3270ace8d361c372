// Sends operations written with graphql() (gateway/client/graphql.ts) through a test
// world's string-based gql(), so that each answer's `data` is typed from schema.graphql.
import { print } from "graphql";

import type { ResultOf, TadaDocumentNode, VariablesOf } from "../gateway/client/graphql.ts";

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Operation = TadaDocumentNode<any, any>;

interface StringClient<Extra, Answer> {
  gql(query: string, variables?: Record<string, unknown>, extra?: Extra): Promise<Answer>;
}

/** `world` is read at each call: the tests replace their world in beforeEach. */
export function typedGql<Extra, Answer extends { data?: unknown }>(world: () => StringClient<Extra, Answer>) {
  return <D extends Operation>(
    document: D,
    variables?: VariablesOf<D>,
    extra?: Extra,
  ): Promise<Omit<Answer, "data"> & { data?: ResultOf<D> | null }> =>
    world().gql(print(document), variables, extra) as Promise<Omit<Answer, "data"> & { data?: ResultOf<D> | null }>;
}

/** One typed operation through `world`'s gql(). */
export function gqlOn<Extra, Answer extends { data?: unknown }, D extends Operation>(
  world: StringClient<Extra, Answer>,
  document: D,
  variables?: VariablesOf<D>,
  extra?: Extra,
) {
  return typedGql(() => world)(document, variables, extra);
}
