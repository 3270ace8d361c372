// The operator dashboard: its static handler over HTTP, then the real bundle in
// Debian's chromium (driven by playwright-core) against a real gateway and consumer.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";

import type { Locator, Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";

import { createDashboardHandler } from "../gateway/src/dashboard.ts";
import { type BrowserSession, closeServer, listen, openBrowser, poll } from "./support/browser.ts";
import { countTrue, createTestEnv, type TestEnv } from "./support/env.ts";

const ROOT = path.resolve(import.meta.dirname, "..");
const DASHBOARD = path.join(ROOT, "gateway/dashboard");
const DIST = path.join(DASHBOARD, "dist");
const VITE_CONFIG = path.join(DASHBOARD, "vite.config.ts");
const SCREENSHOTS = path.join(ROOT, "test-output/dashboard");
describe("dashboard handler", () => {
  let dir = "";
  let server: http.Server;
  let base = "";

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "dashboard-dist-"));
    fs.mkdirSync(path.join(dir, "dist/assets"), { recursive: true });
    fs.writeFileSync(path.join(dir, "dist/index.html"), "<!doctype html><title>dash</title>");
    fs.writeFileSync(path.join(dir, "dist/assets/index-AbCd1234.js"), "console.log(1);\n");
    fs.writeFileSync(path.join(dir, "dist/assets/index-Zz9_-xYw.css"), "body{}\n");
    fs.writeFileSync(path.join(dir, "dist/assets/notes.txt"), "plain\n");
    fs.writeFileSync(path.join(dir, "secret.txt"), "outside the dist folder\n");
    const present = createDashboardHandler({ distDir: path.join(dir, "dist") });
    const missing = createDashboardHandler({ distDir: path.join(dir, "not-built") });
    // Requests under /missing/ see a handler whose build is absent; everything it declines answers 418.
    server = http.createServer((req, res) => {
      const handler = req.url?.startsWith("/missing/") ? missing : present;
      if (req.url?.startsWith("/missing/")) req.url = req.url.slice("/missing".length);
      if (!handler(req, res)) res.writeHead(418).end("fell through");
    });
    base = await listen(server);
  });

  afterAll(async () => {
    await closeServer(server);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("serves index.html at / without caching and hashed assets for a year", async () => {
    const index = await fetch(`${base}/`);
    expect(index.status).toBe(200);
    expect(index.headers.get("content-type")).toBe("text/html; charset=utf-8");
    expect(index.headers.get("cache-control")).toBe("no-cache");
    expect(index.headers.get("content-security-policy")).toContain("default-src 'self'");
    expect(await index.text()).toBe("<!doctype html><title>dash</title>");
    expect((await fetch(`${base}/index.html?x=1`)).status).toBe(200);

    const js = await fetch(`${base}/assets/index-AbCd1234.js`);
    expect(js.status).toBe(200);
    expect(js.headers.get("content-type")).toBe("text/javascript; charset=utf-8");
    expect(js.headers.get("cache-control")).toBe("public, max-age=31536000, immutable");
    expect(await js.text()).toBe("console.log(1);\n");
    const css = await fetch(`${base}/assets/index-Zz9_-xYw.css`);
    expect(css.headers.get("content-type")).toBe("text/css; charset=utf-8");
    expect(css.headers.get("cache-control")).toBe("public, max-age=31536000, immutable");
    const txt = await fetch(`${base}/assets/notes.txt`);
    expect(txt.headers.get("cache-control")).toBe("no-cache");

    // Revalidation of index.html costs a 304.
    const etag = index.headers.get("etag")!;
    expect(etag).toMatch(/^W\/"/);
    const again = await fetch(`${base}/`, { headers: { "if-none-match": etag } });
    expect(again.status).toBe(304);
  });

  it("answers HEAD with the headers only, and other methods with 405", async () => {
    const head = await fetch(`${base}/assets/index-AbCd1234.js`, { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(head.headers.get("content-length")).toBe(String("console.log(1);\n".length));
    expect(await head.text()).toBe("");
    const post = await fetch(`${base}/`, { method: "POST", body: "x" });
    expect(post.status).toBe(405);
    expect(post.headers.get("allow")).toBe("GET, HEAD");
  });

  it("never leaves the assets folder and 404s unknown assets", async () => {
    expect((await fetch(`${base}/assets/nope-12345678.js`)).status).toBe(404);
    expect((await fetch(`${base}/assets/..%2Fsecret.txt`)).status).toBe(400);
    expect((await fetch(`${base}/assets/..%2F..%2Fsecret.txt`)).status).toBe(400);
    expect((await fetch(`${base}/assets/%2e%2e%2f%2e%2e%2fsecret.txt`)).status).toBe(400);
    expect((await fetch(`${base}/assets/..%5C..%5Csecret.txt`)).status).toBe(400);
    expect((await fetch(`${base}/assets/%E0%A4%A`)).status).toBe(400);
    // The URL parser resolves plain dot segments before the handler sees them: the path is no longer its own.
    const dots = await fetch(`${base}/assets/../../secret.txt`);
    expect(dots.status).toBe(418);
    expect(await dots.text()).not.toContain("outside the dist folder");
  });

  it("declines paths it does not own", async () => {
    for (const p of ["/graphql", "/healthz", "/readyz", "/assets", "/favicon.ico"]) {
      const res = await fetch(`${base}${p}`);
      expect(res.status, p).toBe(418);
    }
  });

  it("answers 503 with the build command when the bundle is missing", async () => {
    const res = await fetch(`${base}/missing/`);
    expect(res.status).toBe(503);
    expect(await res.text()).toContain("vite build --config gateway/dashboard/vite.config.ts");
    const head = await fetch(`${base}/missing/`, { method: "HEAD" });
    expect(head.status).toBe(503);
    expect(await head.text()).toBe("");
  });
});

describe("dashboard in a browser", () => {
  const token = "dashboard-test-token-0123456789";
  let env: TestEnv | undefined;
  let browser: BrowserSession | undefined;

  beforeAll(() => {
    if (bundleIsStale())
      execFileSync(process.execPath, [path.join(ROOT, "node_modules/vite/bin/vite.js"), "build", "--config", VITE_CONFIG], {
        cwd: ROOT,
        stdio: ["ignore", "ignore", "inherit"],
      });
    fs.mkdirSync(SCREENSHOTS, { recursive: true });
  });

  afterEach(async () => {
    await browser?.close();
    browser = undefined;
    await env?.cleanup();
    env = undefined;
  });

  /** Serves the dashboard from the env's gateway and opens it in a fresh chromium profile. */
  async function openDashboard(e: TestEnv, prepare?: (page: Page) => Promise<unknown>) {
    const base = await listen(e.gateway.server);
    browser = await openBrowser("dashboard");
    const { page, pageErrors } = browser;
    await prepare?.(page);
    await page.goto(`${base}/`);
    return { page, pageErrors };
  }

  it(
    "seeds, publishes, follows the events live, opens a timeline, redrives a dead letter, then redrives and discards a group",
    { timeout: 180_000 },
    async () => {
      env = await createTestEnv({ RETRY_DELAY_MS: "200", GATEWAY_TOKEN: token });
      await env.startConsumer();
      const { page, pageErrors } = await openDashboard(env);

      await poll(() => page.getByTestId("connection").textContent()).toBe("events: live");
      const s1 = page.getByRole("region", { name: "SYSTEM1", exact: true });
      const s2 = page.getByRole("region", { name: "SYSTEM2", exact: true });
      await poll(() => numberIn(s1.getByTestId("orders"))).toBe(0);

      // Seeding is a mutation: the gateway wants the token, so the dashboard asks; a wrong one is asked for again.
      await s1.getByLabel("Orders to seed").fill("50");
      await s1.getByRole("button", { name: "Seed", exact: true }).click();
      const tokenDialog = page.getByRole("dialog", { name: "Gateway token" });
      const tokenInput = tokenDialog.getByLabel("Gateway token");
      await tokenDialog.waitFor();
      expect(await tokenDialog.getByRole("alert").textContent()).toContain("needs the gateway token");
      await tokenInput.fill("not-the-token-at-all");
      await tokenDialog.getByRole("button", { name: "Save and retry" }).click();
      await poll(() => tokenInput.inputValue()).toBe("");
      expect(await env.sources.SYSTEM1.order.count()).toBe(0);
      await tokenInput.fill(token);
      await tokenDialog.getByRole("button", { name: "Save and retry" }).click();
      await tokenDialog.waitFor({ state: "hidden" });
      await toast(page, "SYSTEM1: seeded 50 orders (ids 1–50)").waitFor();
      expect(await page.evaluate(() => localStorage.getItem("tentativa.gatewayToken"))).toBe(token);
      expect(await env.sources.SYSTEM1.order.count()).toBe(50);
      await poll(() => numberIn(s1.getByTestId("orders"))).toBe(50);
      await poll(() => numberIn(s1.getByTestId("pending"))).toBe(50);
      const expectedDead = 50 - (await countTrue(env, "SYSTEM1"));
      expect(expectedDead).toBeGreaterThan(0);
      // A new token reconnects the subscription; publish once it is live again.
      await poll(() => page.getByTestId("connection").textContent()).toBe("events: live");

      await s1.getByRole("button", { name: "Publish pending" }).click();
      await toast(page, "SYSTEM1: published 50 orders (ids 1–50)").waitFor();
      await poll(() => numberIn(s1.getByTestId("cursor"))).toBe(50);
      await poll(() => numberIn(s1.getByTestId("pending"))).toBe(0);

      // The subscription drives the counters: every order ends SUCCEEDED or DEAD_LETTERED.
      await env.drained(90_000);
      const counter = (status: string) => numberIn(s1.getByTestId(`count-${status}`));
      await poll(() => counter("SUCCEEDED")).toBe(50 - expectedDead);
      await poll(() => counter("DEAD_LETTERED")).toBe(expectedDead);
      expect(await counter("RETRY_SCHEDULED")).toBeGreaterThanOrEqual(expectedDead * (env.config.retry.maxAttempts - 1));
      expect(await counter("REJECTED")).toBe(0);
      expect(await numberIn(s2.getByTestId("count-SUCCEEDED"))).toBe(0);
      const events = page.getByRole("region", { name: "Latest events" });
      expect(await events.locator("tbody tr").count()).toBeGreaterThan(50);
      // The sparkline plots completed 5-second buckets: the burst shows once its bucket closes.
      const peak = async () => Number(/peak ([\d.]+)/.exec((await s1.getByRole("img").getAttribute("aria-label")) ?? "")?.[1]);
      await poll(peak).toBeGreaterThan(0);

      // Queue depths, reconciliation and dead letters come from pipelineStats and deadLetters.
      const queues = page.getByRole("region", { name: "Queues" });
      await poll(() => numberIn(queues.getByTestId("queue-messages-dead-letter"))).toBe(expectedDead);
      expect(await numberIn(queues.getByTestId("queue-messages-primary"))).toBe(0);
      await poll(() => numberIn(s1.getByTestId("succeeded"))).toBe(50 - expectedDead);
      await poll(() => numberIn(s1.getByTestId("dead-lettered"))).toBe(expectedDead);
      await poll(() => numberIn(s1.getByTestId("endput-rows"))).toBe(50 - expectedDead);
      const deadLetters = page.getByRole("region", { name: "Dead letters" });
      const rows = deadLetters.locator("tbody tr[data-message-id]");
      await poll(() => rows.count()).toBe(Math.min(20, expectedDead));
      await page.screenshot({ path: path.join(SCREENSHOTS, "01-live.png"), fullPage: true });

      // Clicking a dead-lettered event opens its timeline: maxAttempts attempts, the last one DEAD_LETTERED.
      const deadEvent = events.locator("tbody tr").filter({ hasText: "Dead-lettered" }).first();
      const deadId = (await deadEvent.locator("button[data-message-id]").getAttribute("data-message-id"))!;
      await deadEvent.locator("button[data-message-id]").click();
      const timeline = page.getByRole("region", { name: "Message timeline" });
      await poll(() => timeline.getByTestId("timeline-message-id").textContent()).toBe(deadId);
      const attempts = timeline.getByRole("list", { name: `Attempts of ${deadId}` }).getByRole("listitem");
      await poll(() => attempts.count()).toBe(env.config.retry.maxAttempts);
      expect(await attemptsOf(attempts)).toEqual([
        ...Array.from({ length: env.config.retry.maxAttempts - 1 }, (_, k) => `0/${k + 1}/RETRY_SCHEDULED`),
        `0/${env.config.retry.maxAttempts}/DEAD_LETTERED`,
      ]);
      expect(await attempts.last().textContent()).toContain(`giving up after ${env.config.retry.maxAttempts}`);
      expect(page.url()).toContain(`#message=${deadId}`);
      await page.screenshot({ path: path.join(SCREENSHOTS, "02-timeline.png"), fullPage: true });

      // Redrive one dead letter: the UI shows the result, and the message runs (and dead-letters) again.
      const redriveId = (await rows.first().getAttribute("data-message-id"))!;
      await deadLetters.getByRole("button", { name: `Redrive ${redriveId}` }).click();
      const result = deadLetters.getByTestId("redrive-result");
      await result.waitFor();
      expect(await result.textContent()).toMatch(/: matched 1, moved 1$/);
      await toast(page, "matched 1, moved 1").waitFor();

      // This time the timeline opens from a pasted id; it follows the new round as it happens.
      await timeline.getByLabel("Message id").fill(redriveId);
      await timeline.getByRole("button", { name: "Show" }).click();
      await poll(() => timeline.getByTestId("timeline-message-id").textContent()).toBe(redriveId);
      const redriven = timeline.getByRole("list", { name: `Attempts of ${redriveId}` }).getByRole("listitem");
      // The new round: REDRIVEN, then attempts from 1 again up to DEAD_LETTERED.
      const maxAttempts = env.config.retry.maxAttempts;
      await poll(async () => (await attemptsOf(redriven)).filter((a) => a.startsWith("1/"))).toEqual([
        "1/0/REDRIVEN",
        ...Array.from({ length: maxAttempts - 1 }, (_, k) => `1/${k + 1}/RETRY_SCHEDULED`),
        `1/${maxAttempts}/DEAD_LETTERED`,
      ]);
      await poll(() => counter("DEAD_LETTERED")).toBe(expectedDead + 1);

      // A table's header stays above its rows however far the page is scrolled (here, to the
      // queues' second row): only the lists that scroll inside their panel pin their header.
      await page.evaluate(() => {
        const row = document.querySelector('[aria-label="Queues"] tbody tr:nth-child(2)')!;
        window.scrollBy(0, row.getBoundingClientRect().top);
      });
      const queueHeader = (await queues.locator("thead th").first().boundingBox())!;
      const firstQueue = (await queues.locator("tbody tr").first().boundingBox())!;
      expect(firstQueue.y).toBeLessThan(0);
      expect(queueHeader.y + queueHeader.height).toBeLessThanOrEqual(firstQueue.y + 1);
      await page.evaluate(() => window.scrollTo(0, 0));
      await page.screenshot({ path: path.join(SCREENSHOTS, "03-redrive.png"), fullPage: true });

      // The groups: every dead letter of SYSTEM1 failed its attempts, so one group holds them all.
      const groups = page.getByRole("region", { name: "Dead-letter groups" });
      const group = groups.locator('tbody tr[data-group="SYSTEM1 max-attempts"]');
      await poll(() => numberIn(group.getByTestId("group-count"))).toBe(expectedDead);
      expect(await groups.locator("tbody tr[data-group]").count()).toBe(1);
      expect(await groups.getByTestId("groups-behind").count()).toBe(0);

      // Redis loses the groups: the panel says the queue holds more than they count, and restores them.
      await env.redis.del(...(await env.redis.keys(`${env.config.redis.prefix}:dead-letter*`)));
      const behind = groups.getByTestId("groups-behind");
      await poll(() => behind.textContent()).toContain(`The queue holds ${expectedDead} dead letters; the groups count 0.`);
      await behind.getByRole("button", { name: "Restore from queue" }).click();
      expect(await groupOutcome(page, groups.getByTestId("group-result"), "Restore")).toBe(
        `Restore: read ${expectedDead} dead letters, restored ${expectedDead}, removed 0`,
      );
      await poll(() => numberIn(group.getByTestId("group-count"))).toBe(expectedDead);
      await behind.waitFor({ state: "hidden" });

      // "Redrive group" sends the whole group back; its messages fail their new round and return to it.
      await groups.getByRole("button", { name: "Redrive group SYSTEM1 max-attempts" }).click();
      const groupResult = groups.getByTestId("group-result");
      expect(await groupOutcome(page, groupResult, "Redrive SYSTEM1 max-attempts")).toBe(
        `Redrive SYSTEM1 max-attempts: matched ${expectedDead}, moved ${expectedDead}`,
      );
      await env.drained(90_000);
      await poll(() => numberIn(queues.getByTestId("queue-messages-dead-letter"))).toBe(expectedDead);
      await poll(() => numberIn(group.getByTestId("group-count"))).toBe(expectedDead);

      // "Discard group" asks first: cancelling changes nothing, confirming removes the group for good.
      await groups.getByRole("button", { name: "Discard group SYSTEM1 max-attempts" }).click();
      const confirm = groups.getByRole("group", { name: "Confirm discard of SYSTEM1 max-attempts" });
      expect(await confirm.textContent()).toContain(`Discard ${expectedDead} for good?`);
      await confirm.getByRole("button", { name: "Cancel" }).click();
      await confirm.waitFor({ state: "hidden" });
      expect(await env.queueDepth(env.broker.topology.dlq)).toBe(expectedDead);
      await groups.getByRole("button", { name: "Discard group SYSTEM1 max-attempts" }).click();
      await confirm.getByRole("button", { name: "Confirm discard" }).click();
      expect(await groupOutcome(page, groupResult, "Discard SYSTEM1 max-attempts")).toBe(
        `Discard SYSTEM1 max-attempts: matched ${expectedDead}, discarded ${expectedDead}`,
      );
      await poll(() => groups.locator("td.empty").textContent()).toBe("No dead letters.");
      expect(await env.queueDepth(env.broker.topology.dlq)).toBe(0);
      expect(await env.log.count({ status: "DISCARDED" })).toBe(expectedDead);
      await poll(() => numberIn(queues.getByTestId("queue-messages-dead-letter"))).toBe(0);
      await page.screenshot({ path: path.join(SCREENSHOTS, "05-groups.png"), fullPage: true });

      expect(pageErrors).toEqual([]);
    },
  );

  it("keeps the other panels working when one query fails", { timeout: 120_000 }, async () => {
    env = await createTestEnv();
    const failure = 'Cannot query field "pipelineStats" on type "Query".';
    // As the gateway answers a query for a field it does not have (yet).
    const { page, pageErrors } = await openDashboard(env, (p) =>
      p.route("**/graphql", async (route) => {
        if (!route.request().postData()?.includes("DashboardPipelineStats")) return route.fallback();
        await route.fulfill({
          status: 400,
          contentType: "application/json",
          body: JSON.stringify({ errors: [{ message: failure, extensions: { code: "GRAPHQL_VALIDATION_FAILED" } }] }),
        });
      }),
    );
    const queues = page.getByRole("region", { name: "Queues" });
    const s1 = page.getByRole("region", { name: "SYSTEM1", exact: true });
    await poll(() => queues.getByRole("alert").textContent()).toBe(`${failure} (GRAPHQL_VALIDATION_FAILED)`);
    expect(await s1.getByRole("alert").textContent()).toContain(failure);
    await poll(() => page.getByTestId("connection").textContent()).toBe("events: live");

    // Seeding, the overview and the dead letters still work.
    await s1.getByLabel("Orders to seed").fill("7");
    await s1.getByRole("button", { name: "Seed", exact: true }).click();
    await toast(page, "SYSTEM1: seeded 7 orders (ids 1–7)").waitFor();
    await poll(() => numberIn(s1.getByTestId("pending"))).toBe(7);
    expect(await env.sources.SYSTEM1.order.count()).toBe(7);
    await poll(() => page.getByRole("region", { name: "Dead letters" }).locator("td.empty").textContent()).toBe(
      "The dead-letter queue is empty.",
    );
    // Failed loads show in the page, not the console (the browser logs the 400 responses themselves).
    expect(pageErrors.filter((m) => !m.includes("status of 400"))).toEqual([]);
    await page.screenshot({ path: path.join(SCREENSHOTS, "04-degraded.png"), fullPage: true });

    // The header's GraphiQL link opens GraphiQL from this gateway, in a new tab.
    const [graphiql] = await Promise.all([
      page.context().waitForEvent("page"),
      page.getByRole("link", { name: "GraphiQL" }).click(),
    ]);
    await graphiql.locator(".graphiql-execute-button").waitFor({ timeout: 60_000 });
    expect(graphiql.url()).toBe(new URL("/graphql", page.url()).href);
  });
});

/** Missing, or older than a source file: a stale bundle would test yesterday's dashboard. */
function bundleIsStale(): boolean {
  const built = path.join(DIST, "index.html");
  if (!fs.existsSync(built)) return true;
  const src = path.join(DASHBOARD, "src");
  const sources = [
    path.join(DASHBOARD, "index.html"),
    VITE_CONFIG,
    ...fs.readdirSync(src, { recursive: true }).map((f) => path.join(src, String(f))),
  ];
  const newest = Math.max(...sources.map((f) => fs.statSync(f).mtimeMs));
  return newest > fs.statSync(built).mtimeMs;
}

/** What a group's redrive or discard reported: its result line, or the error it failed with (a walk of the whole group may take a while on a loaded machine). */
async function groupOutcome(page: Page, result: Locator, action: string): Promise<string | null> {
  const failed = page.locator(".toasts .toast-error").filter({ hasText: action });
  await expect
    .poll(async () => (await result.filter({ hasText: action }).count()) + (await failed.count()), { timeout: 90_000 })
    .toBeGreaterThan(0);
  expect(await failed.allTextContents()).toEqual([]);
  return result.textContent();
}

function toast(page: Page, text: string): Locator {
  return page.locator(".toasts").getByRole("status").filter({ hasText: text });
}

/** Timeline entries as "round/attempt/status". */
function attemptsOf(items: Locator): Promise<string[]> {
  return items.evaluateAll((lis) => lis.map((li) => `${li.dataset.round}/${li.dataset.attempt}/${li.dataset.status}`));
}

async function numberIn(locator: Locator): Promise<number> {
  const text = (await locator.textContent())?.replace(/,/g, "").trim() ?? "";
  return /^\d+$/.test(text) ? Number(text) : Number.NaN;
}
