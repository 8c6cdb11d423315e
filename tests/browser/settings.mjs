// Headless-Chromium walk through the settings pages (shared/app/src/web/settings.rs) on a
// running `mailroom serve`, as an admin sets up an IMAP inbox, with axe-core on every page.
//
//   node settings.mjs CONFIG.json
//
// CONFIG (written by tests/tests/it/settings.rs): base, adminLink, agentLink, inbox,
// imap {host, port, user, password, caPem}, smtp {host, port}, member, shots.
//
// Checks, in order: the inboxes page; a new IMAP inbox refused with the server's reason
// for a wrong password (nothing kept); the same inbox connected (folders shown); ticket
// creation on with a pipeline and stage; a member added; "Send a test email" followed to
// all green; a non-admin gets 404 on every settings page. axe-core (WCAG 2.x A/AA and
// best practices) must find nothing on any page. Prints one JSON line; exit 0 when every
// check passed, 1 when one failed (reasons on stderr), 2 when chromium or the config is
// missing.
import { accessSync, constants, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const cfgPath = process.argv[2];
if (!cfgPath) {
  process.stderr.write("usage: node settings.mjs CONFIG.json\n");
  process.exit(2);
}
const cfg = JSON.parse(readFileSync(cfgPath, "utf8"));
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
try {
  accessSync(executablePath, constants.X_OK);
} catch {
  process.stderr.write(`chromium not found at ${executablePath}: install Debian's chromium (apt-get install chromium)\n`);
  process.exit(2);
}
const axeSource = readFileSync(new URL("./node_modules/axe-core/axe.min.js", import.meta.url), "utf8");
mkdirSync(cfg.shots, { recursive: true });

const failures = [];
const steps = [];
const axeResults = {};
const T = 15_000;

function check(ok, what) {
  steps.push({ what, ok: !!ok });
  if (!ok) failures.push(what);
}

async function axe(page, name) {
  await page.evaluate(axeSource);
  const r = await page.evaluate(async () => {
    const res = await window.axe.run(document, {
      iframes: false,
      resultTypes: ["violations"],
      runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"] },
    });
    return res.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target.join(" ")).slice(0, 5) }));
  });
  axeResults[name] = r;
  check(r.length === 0, `axe-core finds nothing on ${name}: ${JSON.stringify(r)}`);
}

async function fillInbox(page, password) {
  await page.fill("input[name=address]", cfg.inbox);
  await page.check("input[name=kind][value=team]");
  await page.selectOption("select[name=provider]", "imap");
  await page.fill("input[name=host]", cfg.imap.host);
  await page.fill("input[name=port]", String(cfg.imap.port));
  await page.selectOption("select[name=security]", "tls");
  await page.fill("input[name=user]", cfg.imap.user);
  await page.fill("input[name=password]", password);
  await page.fill("input[name=smtp_host]", cfg.smtp.host);
  await page.fill("input[name=smtp_port]", String(cfg.smtp.port));
  await page.selectOption("select[name=smtp_security]", "none");
  await page.fill("textarea[name=ca_pem]", cfg.imap.caPem);
}

const browser = await chromium.launch({ executablePath, args: ["--no-sandbox"] });
try {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  page.setDefaultTimeout(T);

  await page.goto(cfg.adminLink);
  await page.goto(`${cfg.base}/app/settings`);
  check((await page.textContent("h1")) === "Inboxes", "the settings page lists the inboxes");
  await axe(page, "inboxes");
  await page.screenshot({ path: join(cfg.shots, "settings-inboxes.png"), fullPage: true });

  await page.click("text=New inbox");
  await page.waitForURL("**/app/settings/inboxes/new");
  await axe(page, "new inbox");
  await fillInbox(page, "not-the-password");
  await page.click("button:has-text('Test and connect')");
  const alert = await page.textContent("[role=alert]").catch(() => "");
  check(/cannot connect/.test(alert) && /AUTHENTICATIONFAILED|uthentication/i.test(alert), `a wrong password is refused with the server's reason: ${alert}`);
  check(!alert.includes("not-the-password"), "the password is not echoed");
  await axe(page, "new inbox with an error");
  await page.screenshot({ path: join(cfg.shots, "settings-refused.png"), fullPage: true });

  await fillInbox(page, cfg.imap.password);
  await page.click("button:has-text('Test and connect')");
  await page.waitForURL(`**/app/settings/inboxes/${cfg.inbox}?**`);
  const connected = await page.textContent("[role=status]");
  check(/Connected: folders found INBOX "INBOX" and Sent folder "Sent"/.test(connected), `connected, with the folders: ${connected}`);
  await axe(page, "inbox");

  await page.check("input[name=enabled]");
  await page.selectOption("select[name=stage]", "support/new");
  await page.click("button:has-text('Save tickets')");
  check((await page.textContent("[role=status]")).includes("Saved tickets"), "ticket creation saved");
  check(await page.isChecked("input[name=enabled]"), "ticket creation is on after the save");

  await page.check(`input[name=user][value="${cfg.member}"]`);
  await page.click("button:has-text('Save access')");
  check((await page.textContent("[role=status]")).includes("Saved members"), "access saved");
  check(await page.isChecked(`input[name=user][value="${cfg.member}"]`), "the member is checked after the save");

  await page.click("button:has-text('Send a test email')");
  await page.waitForURL(`**/app/settings/inboxes/${cfg.inbox}/verify/**`);
  await axe(page, "verification (running)");
  try {
    await page.waitForSelector("[data-outcome=passed], [data-outcome=failed]", { timeout: 90_000 });
  } catch {
    check(false, "the verification finished within 90 s");
  }
  const outcome = await page.getAttribute("[data-outcome]", "data-outcome");
  const stepsText = await page.textContent("#verify-steps");
  check(outcome === "passed", `the verification passed: ${stepsText}`);
  const statuses = await page.$$eval("[data-step]", (els) => els.map((e) => `${e.dataset.step}=${e.dataset.status}`));
  check(statuses.length === 9 && statuses.every((s) => s.endsWith("=pass")), `every step is green: ${statuses}`);
  await axe(page, "verification (finished)");
  await page.screenshot({ path: join(cfg.shots, "settings-verify.png"), fullPage: true });

  // A non-admin: 404 on every settings page.
  const agent = await (await browser.newContext()).newPage();
  await agent.goto(cfg.agentLink);
  for (const path of ["/app/settings", "/app/settings/inboxes/new", `/app/settings/inboxes/${cfg.inbox}`]) {
    const r = await agent.goto(`${cfg.base}${path}`);
    check(r.status() === 404, `a non-admin gets 404 on ${path} (got ${r.status()})`);
  }
  const r = await agent.request.post(`${cfg.base}/app/settings/inboxes/${cfg.inbox}/verify`, { form: { _csrf: "x" } });
  check(r.status() === 404 || r.status() === 403, `a non-admin cannot start a verification (got ${r.status()})`);
} catch (e) {
  check(false, `the walk broke: ${e.stack || e}`);
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify({ steps, axe: axeResults }) + "\n");
if (failures.length) {
  process.stderr.write(failures.join("\n") + "\n");
  process.exit(1);
}
