// Keyset pagination helpers for connections not backed by Pothos Prisma:
// cursors are opaque base64 strings around a sortable key.
import { badInput, boundedFirst } from "../errors.ts";

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
