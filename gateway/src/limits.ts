// Request limits: operations nested deeper than the configured maximum (following
// fragments), and request bodies larger than the configured number of bytes.
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
 * `Object.keys(body).length`, which for a Buffer lists every byte: 0.3 ms per KB, a quarter of a
 * second for a 750 KB document it then refuses in a few ms. A JSON body is handed over parsed
 * (as Express-style body parsers do), which it takes as is; anything else stays a Buffer.
 *
 * A JSON body is decoded chunk by chunk rather than joined into one Buffer first: under the
 * gateway's 128 MB heap limit, V8 grows the heap by little past what is live, and a contiguous
 * megabyte outside the heap beside its megabyte of text set off a full collection every few
 * such requests (13 ms of CPU per refused megabyte against 5 ms decoded this way, BENCHMARKS.md).
 */
export function bodyForYoga(req: IncomingMessage, body: Body): Buffer | object {
  if (/^application\/(graphql-response\+)?json\b/i.test(req.headers["content-type"] ?? "")) {
    try {
      const decoder = new StringDecoder("utf8");
      let text = "";
      for (const chunk of body.chunks) text += decoder.write(chunk);
      const parsed: unknown = JSON.parse(text + decoder.end());
      // An empty object would make the adapter read the (consumed) request stream instead.
      if (parsed !== null && typeof parsed === "object" && Object.keys(parsed).length > 0) return parsed;
    } catch {
      // Not JSON after all: Yoga answers it as it would any malformed body.
    }
  }
  return Buffer.concat(body.chunks, body.bytes);
}

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
