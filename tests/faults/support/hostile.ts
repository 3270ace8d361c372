// Generators of hostile input: malformed AMQP deliveries for the consumer and
// invalid GraphQL-over-HTTP requests for the gateway. Deterministic for a seed,
// so a failure can be replayed.
import { parse } from "graphql";

import { HEADERS, type OrderMessage } from "../../../common/contract.ts";

/** A small seeded PRNG (mulberry32). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const pick = <T>(rnd: () => number, items: readonly T[]): T => items[Math.floor(rnd() * items.length)]!;
const int = (rnd: () => number, min: number, max: number) => min + Math.floor(rnd() * (max - min + 1));
const bytes = (rnd: () => number, n: number) => Buffer.from(Array.from({ length: n }, () => Math.floor(rnd() * 256)));

export interface HostileMessage {
  kind: string;
  body: Buffer;
  headers: Record<string, unknown> | undefined;
  /** The AMQP message-id property; undefined for messages sent without properties. */
  messageId: string | undefined;
}

function fakeOrder(rnd: () => number, i: number): OrderMessage {
  const hex = (n: number) => Array.from({ length: n }, () => Math.floor(rnd() * 16).toString(16)).join("");
  return {
    messageId: `${hex(8)}-${hex(4)}-4${hex(3)}-a${hex(3)}-${hex(12)}`,
    // Far above any seeded id, so a message that slipped through would show up as a stranger.
    source: { system: "SYSTEM1", orderId: 1_500_000_000 + i },
    order: { product: "Mouse", price: "19.90", securityCheck: true },
    requiredAttempts: 1,
    publishedAt: new Date().toISOString(),
  };
}

const WRONG_TYPES: ((o: OrderMessage) => unknown)[] = [
  (o) => ({ ...o, requiredAttempts: "x" }),
  (o) => ({ ...o, requiredAttempts: 0 }),
  (o) => ({ ...o, requiredAttempts: 1.5 }),
  (o) => ({ ...o, messageId: "not-a-uuid" }),
  (o) => ({ ...o, messageId: 12345 }),
  (o) => ({ ...o, source: { system: "SYSTEM3", orderId: 1 } }),
  (o) => ({ ...o, source: { system: "SYSTEM1", orderId: -1 } }),
  (o) => ({ ...o, source: { system: "SYSTEM1", orderId: 2_147_483_648 } }),
  (o) => ({ ...o, source: { system: "SYSTEM1", orderId: "7" } }),
  (o) => ({ ...o, order: { ...o.order, price: 19.9 } }),
  (o) => ({ ...o, order: { ...o.order, price: "19.9" } }),
  (o) => ({ ...o, order: { ...o.order, securityCheck: "true" } }),
  (o) => ({ ...o, order: { ...o.order, product: "" } }),
  (o) => ({ ...o, order: null }),
  (o) => ({ ...o, publishedAt: "yesterday" }),
  (o) => ({ ...o, requiredAttempts: null }),
  (o) => {
    const { source: _source, ...rest } = o;
    return rest;
  },
];

const NOT_OBJECTS = ["null", "42", '"order"', "[]", "true", "[1,2,3]", "{}", '""'];
const BAD_ATTEMPT = ["abc", 0, -3, 1.5, "1e3", true, { n: 1 }, 1e20, "", null];

/** `n` malformed deliveries, spread over every kind. Each has a unique message id except the property-less kind. */
export function hostileMessages(n: number, maxBytes: number, seed = 6): HostileMessage[] {
  const rnd = prng(seed);
  const kinds = [
    "random-bytes",
    "truncated-json",
    "wrong-types",
    "not-an-object",
    "oversized",
    "missing-x-attempt",
    "bad-x-attempt",
    "bad-x-round",
    "no-properties",
  ] as const;
  const out: HostileMessage[] = [];
  for (let i = 0; i < n; i++) {
    const kind = kinds[i % kinds.length]!;
    const order = fakeOrder(rnd, i);
    const valid = Buffer.from(JSON.stringify(order));
    let body = valid;
    let headers: Record<string, unknown> | undefined = { [HEADERS.attempt]: 1, [HEADERS.round]: 0 };
    let messageId: string | undefined = `hostile-${i}`;
    switch (kind) {
      case "random-bytes":
        body = bytes(rnd, int(rnd, 1, 2000));
        break;
      case "truncated-json":
        body = valid.subarray(0, int(rnd, 1, valid.length - 1));
        break;
      case "wrong-types":
        body = Buffer.from(JSON.stringify(pick(rnd, WRONG_TYPES)(order)));
        break;
      case "not-an-object":
        body = Buffer.from(pick(rnd, NOT_OBJECTS));
        break;
      case "oversized":
        body = Buffer.from(
          JSON.stringify({ ...order, order: { ...order.order, product: "x".repeat(int(rnd, maxBytes, 8 * maxBytes)) } }),
        );
        break;
      case "missing-x-attempt":
        headers = rnd() < 0.5 ? {} : { [HEADERS.round]: 0, "x-system": "SYSTEM1" };
        break;
      case "bad-x-attempt":
        headers = { [HEADERS.attempt]: pick(rnd, BAD_ATTEMPT) };
        break;
      case "bad-x-round":
        headers = { [HEADERS.attempt]: 1, [HEADERS.round]: pick(rnd, [-1, "x", 2.5, { r: 0 }]) };
        break;
      case "no-properties":
        headers = undefined;
        messageId = undefined;
        break;
    }
    out.push({ kind, body, headers, messageId });
  }
  return out;
}

export interface HostileRequest {
  kind: string;
  method: "GET" | "POST";
  /** Path and query string. */
  path: string;
  headers: Record<string, string>;
  /**
   * A string body; pieces sent one after the other with their total as content-length (large
   * bodies that share their bulk); or a generator of a streamed (chunked, no content-length) body.
   */
  body?: string | readonly Buffer[] | (() => ReadableStream<Uint8Array>);
}

const VALID_QUERIES = [
  "{ cursors { system lastPublishedId pending } }",
  "{ pipelineStats { queues { name messages consumers } } }",
  "query ($id: ID!) { messageHistory(messageId: $id) { attempt status } }",
  "{ orders(system: SYSTEM1, first: 2) { edges { node { id history { attempt } } } } }",
  "mutation { seedOrders(system: SYSTEM1, count: 1) { inserted } }",
];

const BREAKERS = ["{", "}", "(", ")", ":", "$", "@", "!", "=", '"', "...", "#\n}", "[", "]", "|", "&"];

function badSyntax(rnd: () => number): string {
  for (;;) {
    const base = pick(rnd, VALID_QUERIES);
    let q: string;
    const mode = int(rnd, 0, 3);
    if (mode === 0) q = base.slice(0, int(rnd, 0, base.length - 1));
    else if (mode === 1) {
      const at = int(rnd, 0, base.length);
      q = base.slice(0, at) + pick(rnd, BREAKERS) + base.slice(at);
    } else if (mode === 2) q = Array.from({ length: int(rnd, 1, 60) }, () => String.fromCharCode(int(rnd, 33, 126))).join("");
    else q = base.replace(/[{}]/g, (c) => (rnd() < 0.3 ? "" : c));
    try {
      parse(q);
    } catch {
      return q;
    }
  }
}

const WRONG_TYPE_QUERIES = [
  'mutation { seedOrders(system: SYSTEM1, count: "ten") { inserted } }',
  "mutation { seedOrders(system: SYSTEM1, count: 1.5) { inserted } }",
  "mutation { seedOrders(system: SYSTEM1, count: true) { inserted } }",
  "mutation { seedOrders(system: 1, count: 1) { inserted } }",
  'mutation { seedOrders(system: SYSTEM1, count: 1, securityCheckRatio: "half") { inserted } }',
  'mutation { publishPending(system: SYSTEM1, limit: "all") { published } }',
  "mutation { publishPending(system: SYSTEM1, limit: [1]) { published } }",
  "mutation { resetCursor(system: SYSTEM1, to: 1.25) { system } }",
  'mutation { resetCursor(system: SYSTEM1, to: "0") { system } }',
  "{ messageHistory(messageId: true) { attempt } }",
  "{ messageHistory(messageId: {id: 1}) { attempt } }",
  "{ deadLetters(first: true) { messageId } }",
  'mutation { redriveDeadLetters(limit: "x") { moved } }',
  "mutation { redriveDeadLetters(dryRun: 1) { moved } }",
  '{ messages(first: "a") { edges { node { id } } } }',
  "{ messages(orderId: 1.5) { edges { node { id } } } }",
  "{ orders(system: SYSTEM1, first: 1.5) { totalCount } }",
  "{ cursors { system(arg: 1) } }",
  "{ cursors }",
  "{ cursors { nope } }",
  "{ pipelineStats { queues } }",
  "subscription { processingEvents(status: 5) { messageId } }",
];

const WRONG_TYPE_VARIABLES: { query: string; variables: unknown }[] = [
  { query: "mutation ($c: Int!) { seedOrders(system: SYSTEM1, count: $c) { inserted } }", variables: { c: "abc" } },
  { query: "mutation ($c: Int!) { seedOrders(system: SYSTEM1, count: $c) { inserted } }", variables: { c: null } },
  { query: "mutation ($c: Int!) { seedOrders(system: SYSTEM1, count: $c) { inserted } }", variables: {} },
  { query: "mutation ($s: System!) { publishPending(system: $s) { published } }", variables: { s: 3 } },
  { query: "mutation ($s: System!) { publishPending(system: $s) { published } }", variables: { s: ["SYSTEM1"] } },
  { query: "mutation ($s: System!) { publishPending(system: $s) { published } }", variables: "SYSTEM1" },
  { query: "query ($id: ID!) { messageHistory(messageId: $id) { attempt } }", variables: { id: { nested: true } } },
  { query: "query ($id: ID!) { messageHistory(messageId: $id) { attempt } }", variables: [1, 2] },
  { query: "query ($f: Int) { deadLetters(first: $f) { messageId } }", variables: { f: 1e40 } },
  { query: "query ($f: Int) { deadLetters(first: $f) { messageId } }", variables: { f: "1" } },
];

const OUT_OF_RANGE = [
  "mutation { seedOrders(system: SYSTEM1, count: 0) { inserted } }",
  "mutation { seedOrders(system: SYSTEM1, count: -5) { inserted } }",
  "mutation { seedOrders(system: SYSTEM1, count: 100001) { inserted } }",
  "mutation { seedOrders(system: SYSTEM1, count: 2147483648) { inserted } }",
  "mutation { seedOrders(system: SYSTEM1, count: 99999999999999999999) { inserted } }",
  "mutation { seedOrders(system: SYSTEM1, count: 1, securityCheckRatio: 1.01) { inserted } }",
  "mutation { seedOrders(system: SYSTEM1, count: 1, securityCheckRatio: -0.5) { inserted } }",
  "mutation { seedOrders(system: SYSTEM1, count: 1, securityCheckRatio: 1e400) { inserted } }",
  "mutation { publishPending(system: SYSTEM1, limit: 0) { published } }",
  "mutation { publishPending(system: SYSTEM1, limit: -1) { published } }",
  "mutation { publishPending(system: SYSTEM1, limit: 2147483648) { published } }",
  "mutation { resetCursor(system: SYSTEM1, to: -1) { system } }",
  "mutation { resetCursor(system: SYSTEM1, to: 2147483648) { system } }",
  "mutation { redriveDeadLetters(limit: -1) { moved } }",
  "mutation { redriveDeadLetters(limit: 0) { moved } }",
  "{ deadLetters(first: 0) { messageId } }",
  "{ deadLetters(first: -1) { messageId } }",
  "{ deadLetters(first: 100000) { messageId } }",
  "{ messages(first: 0) { edges { node { id } } } }",
  "{ messages(first: 1000000) { edges { node { id } } } }",
  "{ messages(first: -3) { edges { node { id } } } }",
  "{ orders(system: SYSTEM1, first: 0) { totalCount } }",
  "{ orders(system: SYSTEM1, first: 2147483647) { totalCount } }",
  "{ endputOrders(first: -1) { totalCount } }",
  "{ endputOrders(first: 100000) { totalCount } }",
];

const UNKNOWN_ENUMS = [
  "mutation { seedOrders(system: SYSTEM3, count: 1) { inserted } }",
  "mutation { seedOrders(system: system1, count: 1) { inserted } }",
  'mutation { seedOrders(system: "SYSTEM1", count: 1) { inserted } }',
  "mutation { publishPending(system: ALL) { published } }",
  "mutation { resetCursor(system: SYSTEM0, to: 0) { system } }",
  "mutation { redriveDeadLetters(system: SYSTEM9) { moved } }",
  "{ messages(status: DONE) { edges { node { id } } } }",
  "{ messages(status: succeeded) { edges { node { id } } } }",
  "{ messages(system: null, status: FAILED) { edges { node { id } } } }",
  "{ orders(system: SYSTEM_1) { totalCount } }",
  "{ endputOrders(system: ENDPUT) { totalCount } }",
  "subscription { processingEvents(system: NOPE) { messageId } }",
];

function deepQuery(rnd: () => number): string {
  const depth = pick(rnd, [13, 14, 20, 50, 100, 500, 2_000, 10_000, 50_000]);
  const head = "{ orders(system: SYSTEM1, first: 1) { edges { node { history { ";
  const inner = Array.from({ length: depth - 4 }, (_, i) => `f${i % 3} { `).join("");
  return `${head}${inner}attempt${" }".repeat(depth)} }`;
}

function fragmentCycle(rnd: () => number): string {
  const n = int(rnd, 1, 5);
  const frags = Array.from({ length: n }, (_, i) => `fragment F${i} on Query { cursors { system } ...F${(i + 1) % n} }`);
  return `{ ...F0 } ${frags.join(" ")}`;
}

const json = { "content-type": "application/json", accept: "application/json" };

/** `n` invalid requests spread over every kind. */
export function hostileRequests(n: number, maxBodyBytes: number, seed = 6): HostileRequest[] {
  const rnd = prng(seed);
  const post = (kind: string, body: unknown, headers: Record<string, string> = json): HostileRequest => ({
    kind,
    method: "POST",
    path: "/graphql",
    headers,
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  const oversizedQuery = () => `{ cursors { system } } #${"x".repeat(int(rnd, maxBodyBytes, 3 * maxBodyBytes))}\n`;
  const makers: (() => HostileRequest)[] = [
    () => post("bad-syntax", { query: badSyntax(rnd) }),
    () =>
      rnd() < 0.6
        ? post("wrong-types", { query: pick(rnd, WRONG_TYPE_QUERIES) })
        : post("wrong-types", pick(rnd, WRONG_TYPE_VARIABLES)),
    () => post("out-of-range", { query: pick(rnd, OUT_OF_RANGE) }),
    () => post("unknown-enum", { query: pick(rnd, UNKNOWN_ENUMS) }),
    () => post("over-deep", { query: rnd() < 0.8 ? deepQuery(rnd) : fragmentCycle(rnd) }),
    () => post("oversized", { query: oversizedQuery() }),
    () => {
      const payload = JSON.stringify({ query: oversizedQuery() });
      return {
        kind: "oversized-chunked",
        method: "POST",
        path: "/graphql",
        headers: json,
        body: () =>
          new ReadableStream<Uint8Array>({
            start(controller) {
              const buf = Buffer.from(payload);
              for (let i = 0; i < buf.length; i += 64 * 1024) controller.enqueue(buf.subarray(i, i + 64 * 1024));
              controller.close();
            },
          }),
      };
    },
    () =>
      pick(rnd, [
        () => post("malformed-http", '{"query": "{ cursors { system } }"'),
        () => post("malformed-http", "not json at all"),
        () => post("malformed-http", ""),
        () => post("malformed-http", "null"),
        () => post("malformed-http", "[]"),
        () => post("malformed-http", { query: 5 }),
        () => post("malformed-http", { query: null }),
        () => post("malformed-http", { variables: {} }),
        () => post("malformed-http", { query: "{ cursors { system } }", variables: "x" }),
        () => post("malformed-http", { query: "{ cursors { system } }", operationName: "Nope" }),
        () => post("malformed-http", { query: "query A { cursors { system } } query B { cursors { system } }" }),
        () => post("malformed-http", { query: "{ cursors { system } }", extensions: "x" }),
        () => post("malformed-http", [{ query: "{ cursors { system } }" }, { query: "{ cursors { system } }" }]),
        () => post("malformed-http", "query=%7B%7D", { "content-type": "application/x-www-form-urlencoded" }),
        () => post("malformed-http", "\u0000\u0001\u0002", { "content-type": "application/octet-stream" }),
        (): HostileRequest => ({
          kind: "malformed-http",
          method: "GET",
          path: `/graphql?query=${encodeURIComponent("mutation { seedOrders(system: SYSTEM1, count: 1) { inserted } }")}`,
          headers: { accept: "application/json" },
        }),
        (): HostileRequest => ({
          kind: "malformed-http",
          method: "GET",
          path: "/graphql?query=%7B",
          headers: { accept: "application/json" },
        }),
        (): HostileRequest => ({
          kind: "malformed-http",
          method: "GET",
          path: "/graphql?query=%7B%20cursors%20%7B%20system%20%7D%20%7D&variables=%7Bnope",
          headers: { accept: "application/json" },
        }),
      ])(),
  ];
  return Array.from({ length: n }, (_, i) => makers[i % makers.length]!());
}

/** The kinds of request that cost the gateway far more than they look, one maker each. */
export const COSTLY_KINDS = [
  "aliases",
  "lists-x-history",
  "directives",
  "nested-fragments",
  "batched",
  "megabyte-of-tokens",
  "megabyte-as-graphql",
  "deeply-nested-json",
] as const;
export type CostlyKind = (typeof COSTLY_KINDS)[number];

/**
 * `perKind` requests of every kind in COSTLY_KINDS, interleaved; each must be refused before it
 * runs. Built one at a time as they are taken: held all at once, the megabyte ones alone would
 * be 200 MB in the sender, whose own garbage collection would then be timed as the gateway's.
 */
export function* costlyRequests(perKind: number, maxBodyBytes: number, seed = 8): Generator<HostileRequest> {
  const rnd = prng(seed);
  const request = (kind: CostlyKind, body: string | Buffer[], headers: Record<string, string> = json): HostileRequest => ({
    kind,
    method: "POST",
    path: "/graphql",
    headers,
    body,
  });
  const post = (kind: CostlyKind, body: unknown, headers?: Record<string, string>) =>
    request(kind, typeof body === "string" ? body : JSON.stringify(body), headers);
  // The megabyte bodies are sent as pieces that share their bulk, encoded once: the sender's own
  // work (a megabyte string or two to collect per request) would be timed with the gateway's.
  const piece = (text: string) => Buffer.from(text, "utf8");
  const filler = piece(" __typename".repeat(Math.floor((maxBodyBytes - 200) / 11)));
  const megabyteDocument = (prefix = "", suffix = "") => [
    piece(`${prefix}{ k${Math.floor(rnd() * 1e9)}: cursors { system }`),
    filler,
    piece(` }${suffix}`),
  ];
  const depth = Math.floor((maxBodyBytes - 200) / 2);
  const brackets = { open: piece("[".repeat(depth)), close: piece("]".repeat(depth)) };
  const aliased = (n: number, field: (i: number) => string) =>
    `{ ${Array.from({ length: n }, (_, i) => `a${i}: ${field(i)}`).join(" ")} }`;
  const makers: Record<CostlyKind, () => HostileRequest> = {
    // The request that ran the gateway out of heap: thousands of aliases of a field that queries the stores.
    aliases: () => post("aliases", { query: aliased(int(rnd, 2_000, 4_000), () => "cursors { system }") }),
    "lists-x-history": () =>
      post("lists-x-history", {
        query: aliased(
          int(rnd, 2, 30),
          (i) =>
            `orders(system: SYSTEM${1 + (i % 2)}, first: 500) { totalCount edges { node { id product history { attempt status error processedAt } } } }`,
        ),
      }),
    directives: () =>
      post("directives", {
        query: `{ cursors { system ${"@include(if: true) ".repeat(pick(rnd, [60, 300, 5_000, 40_000]))} } }`,
      }),
    "nested-fragments": () => {
      const levels = pick(rnd, [20, 30, 60, 1_000]);
      const frags = Array.from(
        { length: levels },
        (_, i) => `fragment F${i} on Query { cursors { system } ...F${i + 1} ...F${i + 1} }`,
      );
      return post("nested-fragments", {
        query: `{ ...F0 } ${frags.join(" ")} fragment F${levels} on Query { cursors { pending } }`,
      });
    },
    batched: () =>
      post(
        "batched",
        Array.from({ length: int(rnd, 2, 2_000) }, () => ({ query: "{ cursors { system pending } }" })),
      ),
    // Each one distinct, as a cache keyed by the document's text would see them.
    "megabyte-of-tokens": () => request("megabyte-of-tokens", megabyteDocument('{"query":"', '"}')),
    // The same megabyte as the body itself (`application/graphql`), which Yoga reads as text.
    "megabyte-as-graphql": () => request("megabyte-as-graphql", megabyteDocument(), { "content-type": "application/graphql" }),
    // Variables nested a few hundred thousand arrays deep: JSON that costs far more to parse than its size.
    "deeply-nested-json": () => {
      const depth = brackets.open.length - int(rnd, 0, 1_000);
      return request("deeply-nested-json", [
        piece('{"query":"{ __typename }","variables":{"v":'),
        brackets.open.subarray(0, depth),
        brackets.close.subarray(0, depth),
        piece("}}"),
      ]);
    },
  };
  for (let i = 0; i < perKind; i++) for (const kind of COSTLY_KINDS) yield makers[kind]();
}
