// What a GraphQL client sees of an error: typed errors (with a code) and the errors GraphQL
// itself raised about the request pass; anything unexpected is logged and masked.
import { GraphQLError } from "graphql";

import { errorMessage } from "../../common/errors.ts";
import type { Logger } from "../../common/logger.ts";

export function createMaskError(logger: Logger): (error: unknown, message: string) => Error {
  return (error, message) => {
    const original = error instanceof GraphQLError ? (error.originalError ?? error) : error;
    if (original instanceof GraphQLError && original.extensions?.code) return original;
    // A document nested deep enough to exhaust the parser's stack is the client's doing.
    if (original instanceof RangeError && /call stack/i.test(original.message)) {
      return new GraphQLError("the query is nested too deeply to parse", {
        extensions: { code: "QUERY_TOO_DEEP", http: { status: 400 } },
      });
    }
    // Errors GraphQL itself raised (validation, variable coercion) describe the request: keep them.
    if (error instanceof GraphQLError && (!error.originalError || error.originalError instanceof GraphQLError)) return error;
    logger.error({ err: errorMessage(original), stack: (original as Error)?.stack }, "unexpected error in a resolver");
    return new GraphQLError(message, { extensions: { code: "INTERNAL_SERVER_ERROR" } });
  };
}
