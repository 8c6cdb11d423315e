// Headless-Chromium walk through the web inbox (shared/app/src/web) on a running
// `mailroom serve`, as an agent would use it, with axe-core on every page.
//
//   node inbox.mjs CONFIG.json
//
// CONFIG (written by tests/tests/it/web.rs): base, agentLink, agentLinkAgain, outsiderLink,
// hugeWord, quoteWord,
// quoteSubject, hostileWord, replyText, signature, teammate, stage, ingestToken, inbox,
// customerReply (raw RFC 5322, its Date `__DATE__`), customerReplyText, shots (a directory for screenshots).
//
// Checks, in order: sign-in redirect; the inbox; the shortcuts dialog; search; opening a
// conversation with the keyboard (its message saying where it was logged); a reply (signature shown, draft kept then cleared); a
// comment with a mention; assign; ticket stage; close; the customer's reply reopening it
// without a reload; a state change without the CSRF token refused; the hostile message
// (no dialog, no request leaving the server, a sandboxed frame with no script, form or
// remote image, its own CSP); the reports page; a non-member gets 404s; sign-out.
// axe-core (WCAG 2.x A/AA and best practices) must find nothing on any page.
// Prints one JSON line; exit 0 when every check passed, 1 when one failed (reasons on
// stderr), 2 when chromium or the config is missing.
import { join } from "node:path";
import { chromium } from "playwright-core";
import { axeViolations, setup } from "./lib.mjs";

const { cfg, executablePath } = setup("inbox.mjs");

const failures = [];
const steps = [];
const axeResults = {};
const outside = [];
const dialogs = [];
const consoleErrors = [];
const badResponses = [];
// The requests this walk makes on purpose that must fail (refused, not found).
const expectedErrors = new Set();
const T = 15_000;

function check(ok, what) {
  steps.push({ what, ok: !!ok });
  if (!ok) failures.push(what);
}

function watch(page, label) {
  page.on("dialog", async (d) => {
    dialogs.push(`${label}: ${d.type()} ${d.message()}`);
    await d.dismiss().catch(() => {});
  });
  page.on("request", (r) => {
    const u = r.url();
    if (!u.startsWith(cfg.base) && !u.startsWith("data:") && !u.startsWith("about:")) outside.push(u);
  });
  page.on("response", (r) => {
    if (r.status() >= 400 && !expectedErrors.has(r.url())) badResponses.push(`${label}: ${r.status()} ${r.url()}`);
  });
  page.on("console", (m) => {
    // A failed load is reported above, with its URL.
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) consoleErrors.push(`${label}: ${m.text()}`);
  });
  page.on("pageerror", (e) => consoleErrors.push(`${label}: uncaught ${e.message}`));
}

async function axe(page, name) {
  const r = await axeViolations(page);
  axeResults[name] = r;
  check(r.length === 0, `axe-core finds nothing on ${name}: ${JSON.stringify(r)}`);
}

async function notice(page, text) {
  try {
    await page.waitForFunction(
      (t) => {
        const n = document.querySelector("#conv-live .notice");
        return n && n.textContent.includes(t);
      },
      text,
      { timeout: T },
    );
    return true;
  } catch {
    const err = await page.evaluate(() => document.querySelector("#conv-live .error")?.textContent || "");
    process.stderr.write(`no notice "${text}"; error shown: ${err}\n`);
    return false;
  }
}

const rows = (page) => page.locator("[data-row]");

const browser = await chromium.launch({ executablePath, headless: true, args: ["--no-sandbox"] }).catch((e) => {
  process.stderr.write(`chromium at ${executablePath} failed to start: ${e.message}\n`);
  process.exit(2);
});
let convUrl = "";
try {
  const ctx = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const page = await ctx.newPage();
  watch(page, "agent");

  // -- signing in
  await page.goto(cfg.base + "/app/");
  check(page.url().startsWith(cfg.base + "/app/signin"), `a visitor is sent to the sign-in page (at ${page.url()})`);
  await axe(page, "sign-in");
  await page.goto(cfg.agentLink);
  check(page.url() === cfg.base + "/app/", `the link signs in and opens the inbox (at ${page.url()})`);
  const cookies = await ctx.cookies();
  const sess = cookies.find((c) => c.name === "mr_session");
  check(sess && sess.httpOnly && sess.sameSite === "Lax", `the session cookie is HttpOnly and SameSite=Lax: ${JSON.stringify(sess)}`);
  const reused = await (await ctx.request.get(cfg.agentLink, { maxRedirects: 0 })).headers()["location"];
  check(reused && reused.includes("bad-link"), `a sign-in link works once (second use → ${reused})`);

  // -- the inbox
  await rows(page).first().waitFor({ timeout: T });
  const listed = await rows(page).count();
  check(listed >= 3, `the open conversations are listed (${listed})`);
  check((await page.locator(".row.unread").count()) >= 1, "unread conversations are marked");
  await axe(page, "inbox");
  await page.screenshot({ path: join(cfg.shots, "inbox.png") });
  await page.keyboard.press("?");
  check(await page.locator("dialog#help[open]").isVisible(), "? opens the shortcuts");
  await axe(page, "shortcuts dialog");
  await page.keyboard.press("Escape");

  // -- the unassigned view, search in it, then open with the keyboard
  await Promise.all([page.waitForURL(/assignee=none/), page.click("nav.views >> text=Unassigned")]);
  await rows(page).first().waitFor({ timeout: T });
  await page.keyboard.press("/");
  check(await page.evaluate(() => document.activeElement?.hasAttribute("data-search")), "/ focuses the search");
  await page.keyboard.type(cfg.quoteWord);
  await page.keyboard.press("Enter");
  await page.waitForFunction((n) => document.querySelectorAll("[data-row]").length === n, 1, { timeout: T }).catch(() => {});
  const found = await rows(page).allTextContents();
  check(
    found.length === 1 && found[0].includes(cfg.quoteSubject) && found[0].includes("unassigned"),
    `search among the unassigned finds the one conversation: ${JSON.stringify(found)}`,
  );
  await page.keyboard.press("Escape");
  await page.keyboard.press("j");
  await Promise.all([page.waitForURL(/\/app\/c\//, { timeout: T }), page.keyboard.press("Enter")]);
  convUrl = page.url().split("?")[0];
  check(await page.locator("#conv-title").textContent().then((t) => t.includes(cfg.quoteSubject)), "j then Enter opens it");
  await page.evaluate(() => {
    window.__mailroomMarker = "no reload";
  });
  await axe(page, "conversation");
  const logLine = ((await page.locator("#conv-live .log-line").first().textContent()) || "").trim();
  check(/^Logged on [^ ]+@[^ ]+/.test(logLine), `the customer's message says where it was logged: ${logLine}`);

  // -- reply: signature shown, draft kept in the browser, cleared once sent
  await page.keyboard.press("r");
  check(await page.evaluate(() => document.activeElement?.id === "reply-text"), "r focuses the reply");
  const sig = await page.locator(".signature").textContent();
  check(sig.includes(cfg.signature), `the signature is shown under the reply: ${sig}`);
  await page.keyboard.type(cfg.replyText);
  const draftKey = await page.evaluate(() => Object.keys(localStorage).find((k) => k.startsWith("mailroom:draft:reply:")));
  check(!!draftKey, "the reply draft is kept in this browser");
  await page.screenshot({ path: join(cfg.shots, "conversation.png") });
  await page.click("#panel-reply button[type=submit]");
  check(await notice(page, "Reply queued"), "the reply is queued");
  const delivery = await page.locator("#conv-live [data-delivery]").first().textContent().catch(() => "");
  const inThread = await page.locator("#conv-live .thread").textContent();
  check(
    ["queued", "sending", "sent"].includes(delivery.trim()) || inThread.includes("James O'Connor"),
    `the reply shows in the thread at once, with its delivery state (${delivery})`,
  );
  check(
    await page.evaluate((k) => localStorage.getItem(k) === null && document.getElementById("reply-text").value === "", draftKey),
    "the sent reply's draft is cleared",
  );

  // -- comment with a mention
  await page.click("#tab-comment");
  await page.fill("#comment-text", `Could you check the volume pricing, @${cfg.teammate}?`);
  await page.click("#panel-comment button[type=submit]");
  check(await notice(page, "notified"), "the comment is added and the teammate notified");
  check(
    await page.locator("#conv-live .comment").filter({ hasText: "volume pricing" }).count().then((n) => n === 1),
    "the comment is in the thread",
  );

  // -- assign, stage, close
  await page.selectOption("[data-assign]", cfg.teammate);
  check(await notice(page, "Assigned to"), "assigned");
  await page.selectOption("select[name=stage]", cfg.stage);
  check(await notice(page, "Ticket moved"), "the ticket moved stage");
  await page.click("[data-close]");
  check(await notice(page, "Closed"), "closed");
  check(await page.locator("#conv-live .conv-head .tag.closed").count().then((n) => n === 1), "shown closed");

  // -- without the CSRF token, a change is refused
  expectedErrors.add(convUrl + "/reopen");
  const forged = await page.evaluate(
    async (u) =>
      (await fetch(u + "/reopen", { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: "x=1" })).status,
    convUrl,
  );
  check(forged === 403, `a change without the CSRF token is refused (${forged})`);

  // -- the customer answers: the open page shows it and the conversation reopens
  // Dates have whole seconds: the customer's must be later than the close to reopen it.
  await page.waitForTimeout(1100);
  const ingest = await ctx.request.post(`${cfg.base}/ingest?inbox=${encodeURIComponent(cfg.inbox)}`, {
    headers: { authorization: `Bearer ${cfg.ingestToken}`, "content-type": "message/rfc822" },
    // Written now, after the close (the config's __DATE__): an earlier one would not reopen.
    data: cfg.customerReply.replace("__DATE__", new Date().toUTCString()),
  });
  check(ingest.status() === 202, `the customer's reply is taken in (${ingest.status()})`);
  const reopened = await page
    .waitForFunction(
      (t) => {
        const live = document.querySelector("#conv-live");
        return live && live.textContent.includes(t) && live.querySelector(".conv-head .tag.open");
      },
      cfg.customerReplyText,
      { timeout: 40_000 },
    )
    .then(() => true)
    .catch(() => false);
  if (!reopened) process.stderr.write(`the conversation shows: ${await page.locator("#conv-live").textContent()}\n`);
  check(reopened, "the customer's reply appears and reopens the conversation");
  check(await page.evaluate(() => window.__mailroomMarker === "no reload"), "all of that without reloading the page");

  // -- hostile mail
  await page.goto(`${cfg.base}/app/?status=&q=${encodeURIComponent(cfg.hostileWord)}`);
  await rows(page).first().waitFor({ timeout: T });
  await Promise.all([page.waitForURL(/\/app\/c\//), rows(page).first().locator("a").click()]);
  const frameEl = page.locator("iframe.mail-body").first();
  await frameEl.waitFor({ timeout: T });
  await page.waitForTimeout(1500);
  const sandbox = await frameEl.getAttribute("sandbox");
  check(sandbox && !sandbox.includes("allow-scripts") && !sandbox.includes("allow-forms"), `the mail frame is sandboxed without scripts or forms: ${sandbox}`);
  const frameSrc = await frameEl.getAttribute("src");
  const frame = page.frames().find((f) => f.url().includes("/m/"));
  check(!!frame, "the mail is in its own frame");
  if (frame) {
    const inside = await frame.evaluate(() => ({
      scripts: document.scripts.length,
      handlers: Array.from(document.querySelectorAll("*")).filter((e) => Array.from(e.attributes).some((a) => a.name.startsWith("on"))).length,
      forms: document.forms.length,
      remoteImages: Array.from(document.images).filter((i) => /^https?:/.test(i.getAttribute("src") || "")).length,
      jsLinks: Array.from(document.links).filter((a) => /^\s*(javascript|data|vbscript):/i.test(a.getAttribute("href") || "")).length,
      text: document.body.textContent.slice(0, 200),
    }));
    check(
      inside.scripts === 0 && inside.handlers === 0 && inside.forms === 0 && inside.remoteImages === 0 && inside.jsLinks === 0,
      `the hostile HTML is defused in the frame: ${JSON.stringify(inside)}`,
    );
  }
  const frameResp = await ctx.request.get(cfg.base + frameSrc);
  const frameCsp = frameResp.headers()["content-security-policy"] || "";
  check(frameCsp.includes("default-src 'none'") && frameCsp.includes("sandbox") && !frameCsp.includes("script-src"), `the frame has its own CSP: ${frameCsp}`);
  const pageCsp = (await ctx.request.get(page.url())).headers()["content-security-policy"] || "";
  check(pageCsp.includes("script-src 'self'") && !pageCsp.includes("unsafe-inline"), `the page's CSP allows no inline script: ${pageCsp}`);
  const blockedNote = await page.locator("text=remote image(s) blocked").count();
  check(blockedNote >= 1, "the reader is told remote images were blocked");
  await axe(page, "hostile conversation");
  await page.screenshot({ path: join(cfg.shots, "hostile.png") });

  // -- a huge message opens, and stays inert
  await page.goto(`${cfg.base}/app/?status=&q=${encodeURIComponent(cfg.hugeWord)}`);
  await rows(page).first().waitFor({ timeout: T });
  await Promise.all([page.waitForURL(/\/app\/c\//, { timeout: 30_000 }), rows(page).first().locator("a").click()]);
  check((await page.locator("#conv-title").textContent()).includes("Enormous"), "a 6 MB message opens");
  const hugeFrame = await ctx.request.get(cfg.base + (await page.locator("iframe.mail-body").first().getAttribute("src")));
  check(hugeFrame.status() === 200 && (await hugeFrame.text()).includes("row 59999"), "and its frame holds all of it");

  // -- a session that ends mid-draft: back to sign-in, the draft still there after
  await page.goto(cfg.base + "/app/?status=open");
  await rows(page).first().waitFor({ timeout: T });
  await Promise.all([page.waitForURL(/\/app\/c\//), rows(page).first().locator("a").click()]);
  const draftConv = page.url().split("?")[0];
  await page.click("#tab-comment");
  await page.fill("#comment-text", "A draft written while the session ends");
  await page.locator("#comment-text").dispatchEvent("input");
  await ctx.clearCookies();
  expectedErrors.add(draftConv + "/comment");
  await Promise.all([page.waitForURL(/\/app\/signin/, { timeout: T }), page.click("#panel-comment button[type=submit]")]);
  check(page.url().includes("/app/signin"), `an expired session goes to sign-in (at ${page.url()})`);
  await page.goto(cfg.agentLinkAgain);
  await page.goto(draftConv);
  const kept = await page.locator("#comment-text").inputValue();
  check(kept === "A draft written while the session ends", `the draft survives the expiry (${JSON.stringify(kept)})`);

  // -- reports
  await page.goto(cfg.base + "/app/reports");
  check((await page.locator("h1").textContent()) === "Reports", "the reports page opens");
  await axe(page, "reports");

  // -- a user who is not a member of the inbox
  const ctx2 = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const other = await ctx2.newPage();
  watch(other, "outsider");
  await other.goto(cfg.outsiderLink);
  const theirs = await rows(other).allTextContents();
  check(!theirs.some((t) => t.includes(cfg.quoteSubject)), "a non-member does not see the conversation in their list");
  for (const part of ["", "/live", "/m/0", "/comment"]) expectedErrors.add(convUrl + part);
  const resp = await other.goto(convUrl);
  check(resp.status() === 404, `a non-member opening it gets 404 (${resp.status()})`);
  check((await other.locator("h1").textContent()) === "Not found", "and the not-found page");
  await axe(other, "not found");
  for (const part of ["/live", "/m/0"]) {
    const s = (await ctx2.request.get(convUrl + part)).status();
    check(s === 404, `a non-member gets 404 for ${part} too (${s})`);
  }
  const post = await other.evaluate(async (u) => {
    const csrf = document.querySelector('meta[name="csrf-token"]').content;
    return (await fetch(u + "/comment", { method: "POST", headers: { "X-CSRF-Token": csrf, "content-type": "application/x-www-form-urlencoded" }, body: "body=hi" })).status;
  }, convUrl);
  check(post === 404, `a non-member cannot comment on it (${post})`);

  // -- sign out
  await page.goto(cfg.base + "/app/");
  await Promise.all([page.waitForURL(/signin/), page.click("text=Sign out")]);
  await page.goto(convUrl);
  check(page.url().includes("/app/signin"), "after signing out the conversation needs a sign-in again");

  check(dialogs.length === 0, `no dialog opened: ${JSON.stringify(dialogs)}`);
  check(outside.length === 0, `no request left the server: ${JSON.stringify(outside)}`);
  check(consoleErrors.length === 0, `no console error: ${JSON.stringify(consoleErrors)}`);
  check(badResponses.length === 0, `no unexpected failed request: ${JSON.stringify(badResponses)}`);
} catch (e) {
  failures.push(`unexpected: ${e.stack || e}`);
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify({ conversation: convUrl, steps: steps.length, failures, axe: axeResults }) + "\n");
if (failures.length) {
  for (const f of failures) process.stderr.write(`FAIL ${f}\n`);
  process.exit(1);
}
