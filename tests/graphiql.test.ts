// GraphiQL at /graphql in Debian's chromium (driven by playwright-core) against a real
// gateway: it renders with every request off this machine refused, and runs the API tour.
import fs from "node:fs";
import path from "node:path";

import { Kind, parse, validate } from "graphql";
import { createClient } from "graphql-ws";
import type { Page } from "playwright-core";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";

import { eventsTopic } from "../common/events.ts";
import { graphql } from "../gateway/client/graphql.ts";
import { API_TOUR, GRAPHIQL_CSP } from "../gateway/src/graphiql.ts";
import { schema } from "../gateway/src/schema/index.ts";
import { type BrowserSession, closeServer, listen, openBrowser, poll } from "./support/browser.ts";
import { createTestEnv, type TestEnv } from "./support/env.ts";
import { gqlOn } from "./typed-gql.ts";

const ROOT = path.resolve(import.meta.dirname, "..");
const SCREENSHOTS = path.join(ROOT, "test-output/graphiql");
const LOCAL_HOSTS = new Set(["127.0.0.1", "localhost"]);

describe("the API tour", () => {
  it("is valid against the schema, one named operation a line", () => {
    const document = parse(API_TOUR);
    expect(validate(schema, document)).toEqual([]);
    const lines = API_TOUR.trim().split("\n");
    expect(document.definitions.map((d) => d.kind === Kind.OPERATION_DEFINITION && d.name?.value)).toHaveLength(lines.length);
    for (const d of document.definitions) expect(d.kind === Kind.OPERATION_DEFINITION && d.name?.value).toBeTruthy();
  });

  it("is the one the README shows", () => {
    const readme = fs.readFileSync(path.join(ROOT, "README.md"), "utf8");
    expect(readme).toContain(`\`\`\`graphql\n${API_TOUR}\`\`\``);
  });
});

describe("GraphiQL's WebSocket operations", () => {
  it("carry the token in each operation's extensions.headers, which the gateway accepts", { timeout: 60_000 }, async () => {
    const token = "graphiql-ws-token-0123456789";
    const env = await createTestEnv({ GATEWAY_TOKEN: token, GATEWAY_TOKEN_READS: "true" });
    const base = await listen(env.gateway.server);
    // As GraphiQL's client does: no connection parameters, the Headers tab in the extensions.
    const client = createClient({ url: `${base.replace("http", "ws")}/graphql`, webSocketImpl: WebSocket, retryAttempts: 0 });
    const run = (headers: Record<string, string>) =>
      new Promise<{ data?: unknown; errors?: readonly { extensions?: Record<string, unknown> }[] }>((resolve, reject) => {
        client.subscribe(
          { query: "query Cursors { cursors { system pending } }", extensions: { headers } },
          { next: resolve, error: reject, complete: () => undefined },
        );
      });
    try {
      const answered = await run({ Authorization: `Bearer ${token}` });
      expect(answered).toEqual({
        data: {
          cursors: [
            { system: "SYSTEM1", pending: 0 },
            { system: "SYSTEM2", pending: 0 },
          ],
        },
      });
      // A wrong token is refused (the gateway closes the socket with the reason).
      await expect(run({ Authorization: "Bearer <token>" })).rejects.toMatchObject({
        reason: expect.stringContaining("gateway token"),
      });
    } finally {
      await client.dispose();
      await closeServer(env.gateway.server).catch(() => undefined);
      await env.cleanup();
    }
  });
});

describe("GraphiQL in a browser", () => {
  let env: TestEnv | undefined;
  let browser: BrowserSession | undefined;

  beforeAll(() => {
    fs.mkdirSync(SCREENSHOTS, { recursive: true });
  });

  afterEach(async () => {
    await browser?.close();
    browser = undefined;
    await env?.cleanup();
    env = undefined;
  });

  /**
   * Opens /graphql in a fresh profile. Every request for another host is refused and recorded,
   * workers' included; so is every Content-Security-Policy violation the page reports.
   */
  async function openGraphiQL(e: TestEnv) {
    const base = await listen(e.gateway.server);
    browser = await openBrowser("graphiql");
    const { context, page, pageErrors } = browser;
    const outside: string[] = [];
    await context.route("**/*", (route) => {
      const url = new URL(route.request().url());
      if (LOCAL_HOSTS.has(url.hostname)) return route.fallback();
      outside.push(url.href);
      return route.abort("blockedbyclient");
    });
    await page.addInitScript(() => {
      const seen: string[] = [];
      (window as unknown as { cspViolations: string[] }).cspViolations = seen;
      document.addEventListener("securitypolicyviolation", (ev) => seen.push(`${ev.violatedDirective} ${ev.blockedURI}`));
    });
    const response = await page.goto(`${base}/graphql`);
    await page.locator(".graphiql-execute-button").waitFor({ timeout: 60_000 });
    // The schema arrives by introspection: the docs explorer shows once it has.
    await poll(() => queryEditorText(page)).toContain("subscription ProcessingEvents");
    const cspViolations = () => page.evaluate(() => (window as unknown as { cspViolations: string[] }).cspViolations);
    return { base, page, pageErrors, outside, response: response!, cspViolations };
  }

  it("renders from the gateway alone, holds the API tour and refuses remote assets", { timeout: 120_000 }, async () => {
    env = await createTestEnv();
    const { base, page, pageErrors, outside, response, cspViolations } = await openGraphiQL(env);

    expect(response.headers()["content-security-policy"]).toBe(GRAPHIQL_CSP);
    // The tour's operations are all offered by name, and no token placeholder without a token.
    await page.locator(".graphiql-execute-button").click();
    const names = [...API_TOUR.matchAll(/^(?:query|mutation|subscription) (\w+)/gm)].map((m) => m[1]);
    expect(names).toContain("ProcessingEvents");
    await poll(() => page.getByRole("menuitem").allTextContents()).toEqual(names);
    await page.keyboard.press("Escape");
    expect(await page.locator(".graphiql-editor-tool").textContent()).not.toContain("Authorization");
    // Monaco's workers started: they are what highlights errors and completes in the editor.
    await poll(() => page.evaluate(() => performance.getEntriesByType("resource").map((r) => r.name))).toEqual(
      expect.arrayContaining([expect.stringMatching(/\/graphiql\/graphql\.worker\.\w+\.js$/)]),
    );
    await page.screenshot({ path: path.join(SCREENSHOTS, "01-offline.png") });

    expect(outside).toEqual([]);
    expect(await cspViolations()).toEqual([]);
    expect(pageErrors).toEqual([]);

    // The policy is what keeps it so: a remote image is refused before any request is made.
    await page.evaluate(() => {
      const img = document.createElement("img");
      img.src = "https://cdn.example.com/logo.png";
      document.body.append(img);
    });
    await poll(cspViolations).toEqual(["img-src https://cdn.example.com/logo.png"]);
    expect(outside).toEqual([]);

    // The assets are immutable, revalidate for free and compress.
    const asset = new URL(
      (await page.evaluate(() => performance.getEntriesByType("resource").map((r) => r.name))).find((u) =>
        /\/graphiql\/graphiql\.\w+\.js$/.test(u),
      )!,
    );
    const js = await fetch(`${base}${asset.pathname}`, { headers: { "accept-encoding": "gzip" } });
    expect(js.headers.get("cache-control")).toBe("public, max-age=31536000, immutable");
    expect(js.headers.get("content-encoding")).toBe("gzip");
    expect((await fetch(`${base}${asset.pathname}`, { headers: { "if-none-match": js.headers.get("etag")! } })).status).toBe(304);
    expect((await fetch(`${base}/graphiql/graphiql.000000000000.js`)).status).toBe(404);
    expect((await fetch(`${base}/graphiql/../graphql`, { method: "POST" })).status).not.toBe(200);
  });

  it("seeds, reads the cursors, follows events live and asks for the token", { timeout: 180_000 }, async () => {
    const token = "graphiql-test-token-0123456789";
    env = await createTestEnv({ GATEWAY_TOKEN: token });
    await env.startConsumer();
    const { page, pageErrors, outside, cspViolations } = await openGraphiQL(env);
    // CSRF prevention wants a header on requests a browser sends without a preflight: GraphiQL
    // sends none of those, only JSON POSTs (preflighted cross-site) and the WebSocket.
    const graphqlMethods = new Set<string>();
    page.on("request", (r) => {
      if (new URL(r.url()).pathname === "/graphql" && !r.isNavigationRequest()) graphqlMethods.add(r.method());
    });

    // Where the token goes, shown with a placeholder: the page never carries the token itself.
    expect(await headersEditorText(page)).toContain('"Authorization": "Bearer <token>"');
    expect(await page.content()).not.toContain(token);

    // Without the token a mutation is refused, and says why.
    await runOperation(page, "SeedOrders");
    await poll(() => resultText(page)).toContain('"code": "UNAUTHENTICATED"');
    expect(await env.sources.SYSTEM1.order.count()).toBe(0);

    // With it the mutation runs: the answer is in the result pane and the rows in the database.
    await setHeaders(page, { Authorization: `Bearer ${token}` });
    await runOperation(page, "SeedOrders");
    await poll(() => resultText(page)).toContain('"inserted": 1000');
    expect(await env.sources.SYSTEM1.order.count()).toBe(1000);

    await runOperation(page, "Cursors");
    const cursors = '{ "system": "SYSTEM1", "lastPublishedId": 0, "pending": 1000 }';
    await poll(() => resultText(page)).toContain(cursors);
    await page.screenshot({ path: path.join(SCREENSHOTS, "02-cursors.png") });

    // The subscription runs over WebSocket; once the gateway listens, a publish from outside shows up.
    await runOperation(page, "ProcessingEvents");
    await poll(() => executeButtonLabel(page)).toMatch(/^Stop query/);
    await poll(async () => (await env!.redis.pubsub("NUMSUB", eventsTopic(env!.config)))[1]).toBe(1);
    const published = await gqlOn(
      env,
      graphql("mutation { publishPending(system: SYSTEM1, limit: 10) { published } }"),
      {},
      { authorization: `Bearer ${token}` },
    );
    expect(published.data?.publishPending.published).toBe(10);
    await poll(() => resultText(page)).toMatch(/"processingEvents": \{ "messageId": "[0-9a-f-]{36}", "orderId": ([1-9]|10),/);
    await page.screenshot({ path: path.join(SCREENSHOTS, "03-subscription.png") });
    // The run button stops it.
    await page.locator(".graphiql-execute-button").click();
    await poll(() => executeButtonLabel(page)).toMatch(/^Execute query/);

    expect([...graphqlMethods]).toEqual(["POST"]);
    expect(outside).toEqual([]);
    expect(await cspViolations()).toEqual([]);
    expect(pageErrors).toEqual([]);
  });
});

/** Runs one operation of the query editor the way a user would: pick it by name from the run button. */
async function runOperation(page: Page, name: string): Promise<void> {
  // The cursor in another operation would make the button run that one: put it in a comment first.
  await page.locator(".graphiql-query-editor .view-line", { hasText: "API tour" }).click({ position: { x: 2, y: 5 } });
  await page.locator(".graphiql-execute-button").click();
  await page.getByRole("menuitem", { name, exact: true }).click();
}

async function setHeaders(page: Page, headers: Record<string, string>): Promise<void> {
  await visibleEditor(page, ".graphiql-editor-tool").click();
  await page.keyboard.press("ControlOrMeta+A");
  await page.keyboard.insertText(JSON.stringify(headers));
  // Whatever closing quotes and braces Monaco added as it went follow the cursor.
  await page.keyboard.press("ControlOrMeta+Shift+End");
  await page.keyboard.press("Delete");
  await poll(() => headersEditorText(page)).toBe(JSON.stringify(headers));
}

const executeButtonLabel = (page: Page) => page.locator(".graphiql-execute-button").getAttribute("aria-label");

/** An editor's text as shown: Monaco renders spaces as no-break spaces and wraps long lines. */
async function editorText(page: Page, selector: string): Promise<string> {
  const text = await visibleEditor(page, selector).innerText();
  return text.replace(/\s+/g, " ").trim();
}

/** The visible one: GraphiQL keeps the variables and headers editors both, and hides one. */
function visibleEditor(page: Page, selector: string) {
  return page.locator(`${selector} .view-lines`).filter({ visible: true }).first();
}

const queryEditorText = (page: Page) => editorText(page, ".graphiql-query-editor");
const headersEditorText = (page: Page) => editorText(page, ".graphiql-editor-tool");
const resultText = (page: Page) => editorText(page, ".graphiql-response");
