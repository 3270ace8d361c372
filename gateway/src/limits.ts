// Request limits: operations nested deeper than the configured maximum (following
// fragments), request bodies larger than the configured number of bytes, and JSON bodies nested
// deeper than MAX_JSON_DEPTH.
import type { IncomingMessage, ServerResponse } from "node:http";
import { StringDecoder } from "node:string_decoder";

import {
  type ASTNode,
  type FragmentDefinitionNode,
  GraphQLError,
  Kind,
  type SelectionSetNode,
  type ValidationContext,
  type ValidationRule,
} from "graphql";

export function depthLimitRule(maxDepth: number): ValidationRule {
  return (context: ValidationContext) => {
    const fragments = new Map<string, FragmentDefinitionNode>();
    for (const d of context.getDocument().definitions) if (d.kind === Kind.FRAGMENT_DEFINITION) fragments.set(d.name.value, d);

    // A fragment's depth does not depend on where it is spread: each is walked once, or a
    // fragment spreading the next one twice, n levels deep, would be walked 2^n times.
    const fragmentDepth = new Map<string, number>();

    function depthOf(set: SelectionSetNode | undefined, seen: Set<string>): number {
      if (!set) return 0;
      let max = 0;
      for (const sel of set.selections) {
        let d = 0;
        if (sel.kind === Kind.FIELD) d = sel.name.value.startsWith("__") ? 0 : 1 + depthOf(sel.selectionSet, seen);
        else if (sel.kind === Kind.INLINE_FRAGMENT) d = depthOf(sel.selectionSet, seen);
        else {
          const name = sel.name.value;
          const frag = fragments.get(name);
          if (fragmentDepth.has(name)) d = fragmentDepth.get(name)!;
          else if (frag && !seen.has(name)) {
            d = depthOf(frag.selectionSet, new Set([...seen, name]));
            fragmentDepth.set(name, d);
          }
        }
        if (d > max) max = d;
        if (max > maxDepth) return max;
      }
      return max;
    }

    return {
      OperationDefinition(node: ASTNode) {
        if (node.kind !== Kind.OPERATION_DEFINITION) return;
        const depth = depthOf(node.selectionSet, new Set());
        if (depth > maxDepth) {
          context.reportError(
            new GraphQLError(`query depth ${depth} exceeds the maximum of ${maxDepth}`, {
              nodes: [node],
              extensions: { code: "QUERY_TOO_DEEP" },
            }),
          );
        }
      },
    };
  };
}

/**
 * What to hand Yoga as the body already read. Its Node adapter tests a pre-read body with
 * `Object.keys(body).length`, which for a Buffer or a string lists every byte: 0.15 ms per KB, a
 * sixth of a second for a megabyte document it then refuses in a few ms. A JSON body is handed
 * over parsed (as Express-style body parsers do), which it takes as is; a GraphQL document
 * (`application/graphql`) as the parameters Yoga would read from it, `{ query }`; any other (a
 * form) as the chunks it arrived in, an async iterable it reads as a stream.
 *
 * Either is decoded chunk by chunk rather than joined into one Buffer first: under the gateway's
 * 128 MB heap limit, V8 grows the heap by little past what is live, and a contiguous megabyte
 * outside the heap beside its megabyte of text set off a full collection every few such requests
 * (14 ms of CPU per refused megabyte of JSON against 4.5 ms decoded this way; for a document read
 * as a stream, 11 ms, BENCHMARKS.md).
 */
export function bodyForYoga(req: IncomingMessage, body: Body): object {
  if (isJson(req)) {
    try {
      const parsed: unknown = JSON.parse(decode(body));
      // An empty object would make the adapter read the (consumed) request stream instead.
      if (parsed !== null && typeof parsed === "object" && Object.keys(parsed).length > 0) return parsed;
    } catch {
      // Not JSON after all: Yoga answers it as it would any malformed body.
    }
  } else if (isGraphQLDocument(req)) return { query: decode(body) };
  const { chunks, bytes } = body;
  // One enumerable key, or the adapter would not take it for a body already read.
  return {
    bytes,
    async *[Symbol.asyncIterator]() {
      yield* chunks;
    },
  };
}

/** The body as UTF-8 text (malformed sequences replaced, as Yoga's own reading does). */
function decode(body: Body): string {
  const decoder = new StringDecoder("utf8");
  let text = "";
  for (const chunk of body.chunks) text += decoder.write(chunk);
  return text + decoder.end();
}

/** Whether the request says its body is JSON. */
export function isJson(req: IncomingMessage): boolean {
  return /^application\/(graphql-response\+)?json\b/i.test(req.headers["content-type"] ?? "");
}

/** Whether the body is a GraphQL document itself, by the rule Yoga reads it with: the first content type listed. */
function isGraphQLDocument(req: IncomingMessage): boolean {
  const type = (req.headers["content-type"] ?? "").split(",")[0]!;
  return type === "application/graphql" || type.startsWith("application/graphql;");
}

/** How deep arrays and objects may nest in a JSON body (GraphQL variables need a few levels). */
export const MAX_JSON_DEPTH = 64;

const [QUOTE, BACKSLASH, OPEN_BRACE, CLOSE_BRACE, OPEN_BRACKET, CLOSE_BRACKET] = [0x22, 0x5c, 0x7b, 0x7d, 0x5b, 0x5d];

/**
 * Whether a JSON body nests arrays or objects deeper than `limit`, found in one pass over its
 * bytes before it is parsed: V8's JSON.parse spends 0.1 s of CPU on a megabyte of `[[[…]]]`.
 * Brackets inside strings do not count; a body that is not JSON at all is left to the parser.
 */
export function nestedDeeperThan(body: Body, limit: number): boolean {
  let depth = 0;
  let inString = false;
  let escaped = false;
  for (const chunk of body.chunks) {
    // Inside a string, jump to its next quote or backslash (a native search: a megabyte string
    // is passed over in a fraction of a millisecond); each is searched for once per position.
    const after = (byte: number, from: number) => {
      const at = chunk.indexOf(byte, from);
      return at === -1 ? chunk.length : at;
    };
    let quote = -1;
    let backslash = -1;
    let i = 0;
    while (i < chunk.length) {
      if (escaped) {
        escaped = false;
        i++;
      } else if (inString) {
        if (quote < i) quote = after(QUOTE, i);
        if (backslash < i) backslash = after(BACKSLASH, i);
        const at = Math.min(quote, backslash);
        if (at < chunk.length) {
          if (at === backslash) escaped = true;
          else inString = false;
        }
        i = at + 1;
      } else {
        const b = chunk[i++];
        if (b === QUOTE) inString = true;
        else if (b === OPEN_BRACE || b === OPEN_BRACKET) {
          if (++depth > limit) return true;
        } else if (b === CLOSE_BRACE || b === CLOSE_BRACKET) depth--;
      }
    }
  }
  return false;
}

/** The answer to a JSON body nested deeper than MAX_JSON_DEPTH. */
export const tooDeeplyNested: Refusal = {
  status: 400,
  body: JSON.stringify({
    errors: [
      {
        message: `the request body nests JSON arrays or objects more than ${MAX_JSON_DEPTH} levels deep`,
        extensions: { code: "BAD_REQUEST", maxDepth: MAX_JSON_DEPTH },
      },
    ],
  }),
};

/** A body as it arrived: its chunks, not joined. */
export interface Body {
  chunks: Buffer[];
  bytes: number;
}

export type BodyRead = { kind: "body"; body: Body } | { kind: "too-large" } | { kind: "aborted" };

/**
 * Reads a request body into memory, counting the bytes that actually arrive: a chunked body
 * carries no Content-Length to check in advance. Stops keeping bytes as soon as the count
 * passes `limit`; what follows is read and dropped (see `refuseTooLarge`).
 */
export function readBody(req: IncomingMessage, limit: number): Promise<BodyRead> {
  return new Promise((resolve) => {
    const declared = Number(req.headers["content-length"]);
    if (declared > limit) {
      resolve({ kind: "too-large" });
      return;
    }
    let chunks: Buffer[] = [];
    let received = 0;
    let settled = false;
    const settle = (result: () => BodyRead) => {
      if (settled) return;
      settled = true;
      resolve(result());
      chunks = [];
    };
    req.on("data", (chunk: Buffer) => {
      if (settled) return;
      received += chunk.length;
      if (received > limit) settle(() => ({ kind: "too-large" }));
      else chunks.push(chunk);
    });
    req.once("end", () => settle(() => ({ kind: "body", body: { chunks, bytes: received } })));
    req.on("error", () => settle(() => ({ kind: "aborted" })));
    req.once("close", () => settle(() => ({ kind: "aborted" })));
  });
}

// A client still sending when a refusal goes out must get to read it, and must not find the
// connection gone while it writes (EPIPE): the answer is written at once, but the response is
// ended, which lets the server close a non-keep-alive connection, only once the rest of the
// body has been read and dropped. Bounded: a client that goes quiet for LINGER_IDLE_MS or
// sends more than LINGER_BYTES more is cut off.
const LINGER_IDLE_MS = 5_000;
const LINGER_BYTES = 64 * 1024 * 1024;

/** Answers 413 with a GraphQL-style error, then drains what is left of the body within bounds. */
export function refuseTooLarge(req: IncomingMessage, res: ServerResponse, limit: number): void {
  const body = JSON.stringify({
    errors: [{ message: `request body exceeds ${limit} bytes`, extensions: { code: "PAYLOAD_TOO_LARGE" } }],
  });
  refuseRequest(req, res, { status: 413, body });
}

/** An answer that refuses a request before reading its body. */
export interface Refusal {
  status: number;
  headers?: Record<string, string>;
  /** JSON: a GraphQL-style `errors` list. */
  body: string;
}

/** Answers with `refusal` before reading the request's body, then drains what is left of it within bounds. */
export function refuseRequest(req: IncomingMessage, res: ServerResponse, refusal: Refusal): void {
  res.writeHead(refusal.status, {
    ...refusal.headers,
    "content-type": "application/json; charset=utf-8",
    "content-length": Buffer.byteLength(refusal.body),
  });
  res.write(refusal.body);
  let timer: NodeJS.Timeout | undefined;
  const finish = () => {
    clearTimeout(timer);
    if (!res.writableEnded) res.end();
  };
  if (req.complete) return finish();
  const cutOff = () => {
    finish();
    req.socket.destroy();
  };
  const idle = () => {
    clearTimeout(timer);
    timer = setTimeout(cutOff, LINGER_IDLE_MS);
    timer.unref();
  };
  let dropped = 0;
  idle();
  req.on("data", (chunk: Buffer) => {
    dropped += chunk.length;
    if (dropped > LINGER_BYTES) cutOff();
    else idle();
  });
  req.once("end", finish);
  req.once("close", finish);
  req.resume();
}
