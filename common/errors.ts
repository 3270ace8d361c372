// Errors that carry a stable code to GraphQL clients and logs.

export type DependencyName = "postgresql" | "redis" | "rabbitmq" | "mongodb";

/** A backing service could not be reached; the operation had no partial effect that is lost. */
export class DependencyError extends Error {
  override name = "DependencyError";
  readonly code = "DEPENDENCY_UNAVAILABLE";
  readonly dependency: DependencyName;
  constructor(dependency: DependencyName, message: string, options?: { cause?: unknown }) {
    super(`${dependency} is unavailable: ${message}`, options);
    this.dependency = dependency;
  }
}

/** Processing must not be retried: the message goes straight to the dead-letter queue. */
export class UnrecoverableError extends Error {
  override name = "UnrecoverableError";
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => (clearTimeout(t), resolve()), { once: true });
  });
