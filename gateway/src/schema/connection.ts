// Keyset pagination helpers. Connections not backed by Pothos Prisma use cursors
// that are opaque base64 strings around a sortable key.
import type { FieldKind, FieldRef, SchemaTypes } from "@pothos/core";

import { badInput, boundedCount, boundedFirst } from "../errors.ts";

export const encodeCursor = (kind: string, key: string | number) => Buffer.from(`${kind}:${key}`).toString("base64url");

export function decodeCursor(kind: string, cursor: string | null | undefined): string | undefined {
  if (cursor == null) return undefined;
  const raw = Buffer.from(cursor, "base64url").toString("utf8");
  if (!raw.startsWith(`${kind}:`)) throw badInput("after is not a cursor of this connection", "after");
  return raw.slice(kind.length + 1);
}

interface ConnectionArgs {
  first?: number | null;
  after?: string | null;
  last?: number | null;
  before?: string | null;
}

/** Refuses a page size outside 1..500, a cursor `isCursor` does not accept, and mixed directions. */
export function checkPaging(args: ConnectionArgs, isCursor: (cursor: string) => boolean): void {
  boundedCount("first", args.first);
  boundedCount("last", args.last);
  for (const field of ["after", "before"] as const) {
    const cursor = args[field];
    if (cursor != null && !isCursor(cursor)) throw badInput(`${field} is not a cursor of this connection`, field);
  }
  if (args.after != null && args.before != null) throw badInput("after and before cannot be combined", "before");
  if (args.first != null && args.before != null) throw badInput("page backward with last and before", "before");
  if (args.last != null && args.after != null) throw badInput("page forward with first and after", "last");
}

/**
 * Checks a connection's paging arguments before any of its resolvers run. A Pothos Prisma
 * connection answers `totalCount` without calling its `resolve`, so a check placed there is
 * skipped when only the count is selected.
 */
export function withPagingChecked<Types extends SchemaTypes, T, K extends FieldKind>(
  ref: FieldRef<Types, T, K>,
  isCursor: (cursor: string) => boolean,
): FieldRef<Types, T, K> {
  ref.updateConfig((config) => ({
    ...config,
    argMappers: [
      ...config.argMappers,
      (args) => {
        checkPaging(args as ConnectionArgs, isCursor);
        return args;
      },
    ],
  }));
  return ref;
}

export function forwardOnly(args: ConnectionArgs): { first: number; after: string | null | undefined } {
  if (args.last != null || args.before != null) throw badInput("this connection pages forward only: use first and after", "last");
  return { first: boundedFirst(args.first), after: args.after };
}

/** Builds a connection from one extra row fetched past the page to know if there is a next page. */
export function pageOf<T>(rows: T[], first: number, cursorOf: (row: T) => string, afterGiven: boolean) {
  const page = rows.slice(0, first);
  return {
    edges: page.map((node) => ({ node, cursor: cursorOf(node) })),
    pageInfo: {
      hasNextPage: rows.length > first,
      hasPreviousPage: afterGiven,
      startCursor: page.length ? cursorOf(page[0]!) : null,
      endCursor: page.length ? cursorOf(page[page.length - 1]!) : null,
    },
  };
}
