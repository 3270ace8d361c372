// Domain errors reach clients with their message and a stable code in
// extensions.code; anything else is masked by Yoga and logged.
import { GraphQLError } from "graphql";

import { DependencyError } from "../../common/errors.ts";

export type ErrorCode =
  | "BAD_USER_INPUT"
  | "PUBLISH_IN_PROGRESS"
  | "DEAD_LETTERS_BUSY"
  | "DEPENDENCY_UNAVAILABLE"
  | "UNAUTHENTICATED"
  | "NOT_FOUND"
  | "REQUEST_TIMEOUT"
  | "RATE_LIMITED"
  | "SUBSCRIBER_TOO_SLOW";

export class DomainError extends GraphQLError {
  constructor(code: ErrorCode, message: string, extra: Record<string, unknown> = {}) {
    super(message, { extensions: { code, ...extra } });
    this.name = "DomainError";
  }
}

export const badInput = (message: string, field?: string) => new DomainError("BAD_USER_INPUT", message, field ? { field } : {});

/** Turns a store failure into a typed error that names the dependency. */
export function asDomainError(err: unknown): unknown {
  if (err instanceof DependencyError)
    return new DomainError("DEPENDENCY_UNAVAILABLE", err.message, { dependency: err.dependency });
  return err;
}

/** Wraps a store call so that connectivity failures become DEPENDENCY_UNAVAILABLE errors naming the store. */
export async function using<T>(dependency: DependencyError["dependency"], fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof GraphQLError || err instanceof DependencyError) throw asDomainError(err);
    if (isConnectivityError(err)) {
      throw new DomainError("DEPENDENCY_UNAVAILABLE", `${dependency} is unavailable: ${(err as Error).message}`, { dependency });
    }
    throw err;
  }
}

const CONNECTIVITY =
  /ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|ENOTFOUND|Connection is closed|connect|closed|timed? ?out|Server selection|Can't reach database|terminat/i;

export function isConnectivityError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as { code?: unknown }).code;
  if (typeof code === "string" && /^(ECONN|ETIMEDOUT|EPIPE|ENOTFOUND|P1001|P1002|P1017|57P01)/.test(code)) return true;
  // ioredis gives up on a command after maxRetriesPerRequest reconnections with this error.
  if (err.name === "MaxRetriesPerRequestError") return true;
  return CONNECTIVITY.test(err.message) || err.name === "MongoServerSelectionError" || err.name === "MongoNetworkError";
}

/** A page size argument (`first`, `last`, a limit): the fallback when absent, else 1..max. */
export function boundedCount(field: string, value: number | null | undefined, fallback = 20, max = 500): number {
  if (value == null) return fallback;
  if (!Number.isInteger(value) || value < 1 || value > max) throw badInput(`${field} must be between 1 and ${max}`, field);
  return value;
}

export const boundedFirst = (first: number | null | undefined, fallback = 20, max = 500): number =>
  boundedCount("first", first, fallback, max);
