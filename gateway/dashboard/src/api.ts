// The dashboard's only way to the gateway: GraphQL over fetch for queries and
// mutations, graphql-ws for the live subscription. Both carry the gateway token.
import { print } from "@0no-co/graphql.web";
import { type Client, createClient } from "graphql-ws";

import type { ResultOf, TadaDocumentNode, VariablesOf } from "../../client/graphql.ts";

// Any operation written with graphql() from ../../client/graphql.ts.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Operation = TadaDocumentNode<any, any>;
/** Operations without variables may be sent without the argument. */
type Args<D extends Operation> =
  Partial<VariablesOf<D>> extends VariablesOf<D> ? [variables?: VariablesOf<D>] : [variables: VariablesOf<D>];

export class ApiError extends Error {
  override name = "ApiError";
  constructor(
    message: string,
    readonly code?: string,
  ) {
    super(message);
  }
}

interface GraphQLErrorLike {
  message: string;
  extensions?: { code?: unknown };
}

export function toApiError(errors: readonly GraphQLErrorLike[]): ApiError {
  const first = errors[0];
  const code = typeof first?.extensions?.code === "string" ? first.extensions.code : undefined;
  const message = errors.map((e) => e.message).join("; ") || "unknown GraphQL error";
  return new ApiError(message, code);
}

export function errorText(err: unknown): string {
  if (err instanceof ApiError) return err.code ? `${err.message} (${err.code})` : err.message;
  if (err instanceof Error) return err.message;
  return String(err);
}

/** The gateway token, kept in localStorage so a reload does not ask again. */
export interface TokenStore {
  get(): string | null;
  set(token: string | null): void;
  subscribe(listener: (token: string | null) => void): () => void;
}

export function createTokenStore(storage: Storage, key = "tentativa.gatewayToken"): TokenStore {
  const listeners = new Set<(token: string | null) => void>();
  let current = storage.getItem(key);
  return {
    get: () => current,
    set(token) {
      current = token?.trim() || null;
      if (current) storage.setItem(key, current);
      else storage.removeItem(key);
      for (const l of listeners) l(current);
    },
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}

export interface Api {
  /** Reads: an UNAUTHENTICATED answer is thrown (the panel shows it; the header's token button fixes it). */
  query<D extends Operation>(document: D, ...variables: Args<D>): Promise<ResultOf<D>>;
  /** Writes: an UNAUTHENTICATED answer asks for the token and retries until it works or the operator cancels. */
  mutate<D extends Operation>(document: D, ...variables: Args<D>): Promise<ResultOf<D>>;
  /** A graphql-ws client that sends the current token when it connects. */
  createWsClient(on: { connecting(): void; connected(): void; closed(reason: string): void }): Client;
}

export function createApi(opts: {
  httpUrl: string;
  wsUrl: string;
  tokens: TokenStore;
  /** Resolves with a new token, or null when the operator gives up. */
  askToken(reason: string): Promise<string | null>;
}): Api {
  const { httpUrl, wsUrl, tokens } = opts;

  async function send<D extends Operation>(document: D, ...[variables]: Args<D>): Promise<ResultOf<D>> {
    const headers: Record<string, string> = { "content-type": "application/json", accept: "application/json" };
    const token = tokens.get();
    if (token) headers.authorization = `Bearer ${token}`;
    let res: Response;
    try {
      res = await fetch(httpUrl, { method: "POST", headers, body: JSON.stringify({ query: print(document), variables }) });
    } catch (err) {
      throw new ApiError(`the gateway is unreachable: ${errorText(err)}`, "NETWORK");
    }
    let body: { data?: ResultOf<D> | null; errors?: GraphQLErrorLike[] };
    try {
      body = (await res.json()) as typeof body;
    } catch {
      throw new ApiError(`the gateway answered HTTP ${res.status} without a GraphQL body`, `HTTP_${res.status}`);
    }
    if (body.errors?.length) throw toApiError(body.errors);
    if (body.data == null) throw new ApiError(`the gateway answered HTTP ${res.status} without data`, `HTTP_${res.status}`);
    return body.data;
  }

  return {
    query: send,
    async mutate(document, ...variables) {
      for (;;) {
        try {
          return await send(document, ...variables);
        } catch (err) {
          if (!(err instanceof ApiError) || err.code !== "UNAUTHENTICATED") throw err;
          const token = await opts.askToken(err.message);
          if (token === null) throw err;
          tokens.set(token);
        }
      }
    },
    createWsClient(on) {
      return createClient({
        url: wsUrl,
        lazy: true,
        connectionParams: (): Record<string, string> => {
          const token = tokens.get();
          return token ? { authorization: `Bearer ${token}` } : {};
        },
        retryAttempts: Number.POSITIVE_INFINITY,
        shouldRetry: () => true,
        retryWait: (retries) => new Promise((resolve) => setTimeout(resolve, Math.min(5_000, 250 * 2 ** retries))),
        on: {
          connecting: () => on.connecting(),
          connected: () => on.connected(),
          closed: (event) => {
            const e = event as { code?: number; reason?: string } | undefined;
            on.closed(e?.reason || (e?.code ? `closed with code ${e.code}` : "connection closed"));
          },
        },
      });
    },
  };
}

export function gatewayUrls(location: Location): { httpUrl: string; wsUrl: string } {
  const ws = location.protocol === "https:" ? "wss:" : "ws:";
  return { httpUrl: `${location.origin}/graphql`, wsUrl: `${ws}//${location.host}/graphql` };
}
