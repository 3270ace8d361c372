// The gateway token: mutations always need it when one is configured; reads only with
// GATEWAY_TOKEN_READS.
import { timingSafeEqual } from "node:crypto";

import { type ExecutionArgs, Kind, type OperationDefinitionNode } from "graphql";
import type { Plugin } from "graphql-yoga";

import type { Context, Deps } from "./context.ts";
import { DomainError } from "./errors.ts";

/** Whether an Authorization header carries the token (compared in constant time). */
export function tokenMatches(expected: string, header: string | null | undefined): boolean {
  const m = /^Bearer\s+(.+)$/i.exec(header ?? "");
  if (!m) return false;
  const a = Buffer.from(m[1]!.trim());
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

export function useAuth(deps: Deps): Plugin<Context> {
  return {
    onExecute({ args }) {
      guard(deps, args as ExecutionArgs & { contextValue: Context });
    },
    onSubscribe({ args }) {
      guard(deps, args as ExecutionArgs & { contextValue: Context });
    },
  };
}

function guard(deps: Deps, args: ExecutionArgs & { contextValue: Context }): void {
  if (!deps.config.gateway.token || args.contextValue.authenticated) return;
  const op = args.document.definitions.find(
    (d): d is OperationDefinitionNode =>
      d.kind === Kind.OPERATION_DEFINITION && (args.operationName == null || d.name?.value === args.operationName),
  );
  const needs = op?.operation === "mutation" || deps.config.gateway.tokenReads;
  if (needs)
    throw new DomainError("UNAUTHENTICATED", "this operation needs the gateway token: send Authorization: Bearer <token>");
}
