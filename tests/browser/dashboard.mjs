// Headless-Chromium check of the reports dashboard (functions/mailroom/src/dashboard.html).
//
//   node dashboard.mjs URL SCREENSHOT.png [--expect-agents N] [--expect-days N]
//
// Opens URL in Debian's chromium (CHROMIUM=/path overrides /usr/bin/chromium), waits up to
// 20 s for body[data-ready="1"] or body[data-error], then checks:
//   - no data-error;
//   - each chart container (data-chart = volume, first-response, open-closed, agents, sla)
//     holds an <svg> with at least one drawn mark (rect/path/circle);
//   - --expect-days N: the volume chart has N day bars (elements with data-mark="day");
//   - --expect-agents N: the agents chart has N agent rows (elements with data-mark="agent");
//   - every <svg> there has role="img" and an aria-label;
//   - no console error/warning, no uncaught page error, no failed request (network
//     failure or HTTP status >= 400).
// Always writes a full-page screenshot and prints one JSON line with what it found.
// Exit: 0 all checks passed; 1 a check failed (reasons on stderr); 2 chromium is missing or
// does not start, or the command line is wrong.
import { statSync } from "node:fs";
import { resolve } from "node:path";
import { chromium } from "playwright-core";
import { chromiumPath } from "./lib.mjs";

const CHARTS = ["volume", "first-response", "open-closed", "agents", "sla"];
const TIMEOUT_MS = 20_000;

function usage(msg) {
  if (msg) process.stderr.write(`${msg}\n`);
  process.stderr.write("usage: node dashboard.mjs URL SCREENSHOT.png [--expect-agents N] [--expect-days N]\n");
  process.exit(2);
}

function parseArgs(argv) {
  const pos = [];
  const opts = { expectAgents: null, expectDays: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const m = /^--(expect-agents|expect-days)(?:=(.*))?$/.exec(a);
    if (m) {
      const raw = m[2] ?? argv[++i];
      if (raw === undefined || !/^\d+$/.test(raw)) usage(`--${m[1]} needs a whole number`);
      opts[m[1] === "expect-agents" ? "expectAgents" : "expectDays"] = Number(raw);
    } else if (a === "-h" || a === "--help") {
      usage();
    } else if (a.startsWith("--")) {
      usage(`unknown option ${a}`);
    } else {
      pos.push(a);
    }
  }
  if (pos.length !== 2) usage("expected URL and SCREENSHOT.png");
  return { url: pos[0], screenshot: resolve(pos[1]), ...opts };
}

const args = parseArgs(process.argv.slice(2));
const executablePath = chromiumPath();

const consoleErrors = [];
const pageErrors = [];
const failedRequests = [];
const failures = [];
let browser;
try {
  browser = await chromium.launch({ executablePath, headless: true, args: ["--no-sandbox"] });
} catch (e) {
  process.stderr.write(`chromium at ${executablePath} failed to start: ${e.message}\n`);
  process.exit(2);
}

let result = {};
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.on("console", (msg) => {
    const type = msg.type();
    if (type === "error" || type === "warning") {
      const loc = msg.location();
      consoleErrors.push({ type, text: msg.text(), url: loc?.url || undefined, line: loc?.lineNumber });
    }
  });
  page.on("pageerror", (err) => pageErrors.push(String(err?.stack || err)));
  page.on("requestfailed", (req) => {
    failedRequests.push(`${req.method()} ${req.url()}: ${req.failure()?.errorText ?? "failed"}`);
  });
  page.on("response", (res) => {
    if (res.status() >= 400) failedRequests.push(`${res.request().method()} ${res.url()}: HTTP ${res.status()}`);
  });

  let state = "timeout";
  try {
    const resp = await page.goto(args.url, { waitUntil: "domcontentloaded", timeout: TIMEOUT_MS });
    if (!resp || !resp.ok()) failures.push(`page ${args.url} answered HTTP ${resp ? resp.status() : "nothing"}`);
    await page.waitForSelector('body[data-ready="1"], body[data-error]', { state: "attached", timeout: TIMEOUT_MS });
    state = "done";
  } catch (e) {
    failures.push(
      /Timeout/i.test(e.message)
        ? `timed out after ${TIMEOUT_MS / 1000} s waiting for body[data-ready="1"] or body[data-error]`
        : `could not load ${args.url}: ${e.message.split("\n")[0]}`,
    );
  }

  const found = await page
    .evaluate((charts) => {
      const out = { title: document.title, ready: document.body.dataset.ready ?? null, error: document.body.dataset.error ?? null, charts: {} };
      for (const name of charts) {
        const el = document.querySelector(`[data-chart="${name}"]`);
        if (!el) {
          out.charts[name] = { present: false };
          continue;
        }
        const svgs = [...el.querySelectorAll("svg")];
        out.charts[name] = {
          present: true,
          svgs: svgs.length,
          svgs_with_marks: svgs.filter((s) => s.querySelector("rect, path, circle")).length,
          marks: svgs.reduce((n, s) => n + s.querySelectorAll("rect, path, circle").length, 0),
          unlabelled_svgs: svgs.filter((s) => s.getAttribute("role") !== "img" || !s.getAttribute("aria-label")).length,
          no_data_notes: el.querySelectorAll(".nodata").length,
        };
      }
      if (out.charts.volume.present) out.charts.volume.day_bars = document.querySelectorAll('[data-chart="volume"] svg [data-mark="day"]').length;
      if (out.charts.agents.present) out.charts.agents.agent_rows = document.querySelectorAll('[data-chart="agents"] svg [data-mark="agent"]').length;
      return out;
    }, CHARTS)
    .catch((e) => ({ charts: {}, evaluate_error: e.message }));

  if (found.evaluate_error) failures.push(`could not inspect the page: ${found.evaluate_error}`);
  if (found.error) failures.push(`page reports data-error: ${found.error}`);
  else if (state === "done" && found.ready !== "1") failures.push("body[data-ready] is not \"1\"");
  if (state === "done" && !found.error) {
    if (!found.title) failures.push("the page has no <title>");
    for (const name of CHARTS) {
      const c = found.charts?.[name];
      if (!c || !c.present) failures.push(`no [data-chart="${name}"] container`);
      else if (c.svgs_with_marks < 1) failures.push(`[data-chart="${name}"] has no <svg> with a drawn mark (rect/path/circle)`);
      else if (c.unlabelled_svgs > 0) failures.push(`[data-chart="${name}"] has ${c.unlabelled_svgs} <svg> without role="img" and aria-label`);
    }
    if (args.expectDays !== null && found.charts?.volume?.day_bars !== args.expectDays) {
      failures.push(`volume: expected ${args.expectDays} day bars, found ${found.charts?.volume?.day_bars}`);
    }
    if (args.expectAgents !== null && found.charts?.agents?.agent_rows !== args.expectAgents) {
      failures.push(`agents: expected ${args.expectAgents} agent rows, found ${found.charts?.agents?.agent_rows}`);
    }
  }

  let bytes = 0;
  try {
    await page.screenshot({ path: args.screenshot, fullPage: true });
    bytes = statSync(args.screenshot).size;
  } catch (e) {
    failures.push(`screenshot failed: ${e.message.split("\n")[0]}`);
  }
  // Let late console messages arrive before judging them.
  await page.waitForTimeout(150);

  if (consoleErrors.length) failures.push(`${consoleErrors.length} console error/warning message(s): ${consoleErrors.map((m) => m.text).join(" | ")}`);
  if (pageErrors.length) failures.push(`${pageErrors.length} page error(s): ${pageErrors.map((e) => e.split("\n")[0]).join(" | ")}`);
  if (failedRequests.length) failures.push(`${failedRequests.length} failed request(s): ${failedRequests.join(" | ")}`);

  result = {
    url: args.url,
    ok: failures.length === 0,
    ready: found.ready ?? null,
    data_error: found.error ?? null,
    charts: found.charts ?? {},
    console_errors: consoleErrors,
    page_errors: pageErrors,
    failed_requests: failedRequests,
    screenshot: args.screenshot,
    bytes,
  };
} catch (e) {
  failures.push(`unexpected: ${e.stack || e}`);
} finally {
  await browser.close().catch(() => {});
}

process.stdout.write(`${JSON.stringify(result)}\n`);
if (failures.length) {
  for (const f of failures) process.stderr.write(`FAIL: ${f}\n`);
  process.exit(1);
}
process.exit(0);
