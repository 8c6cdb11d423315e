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
import { join } from "node:path";
import { chromium } from "playwright-core";
import { setup, Walk } from "./lib.mjs";

const { cfg, executablePath } = setup("settings.mjs");
const walk = new Walk();
const check = walk.check.bind(walk);
const axe = walk.audit.bind(walk);
const T = 15_000;

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

  // The routing rule the test message will match, added on the rules page.
  await page.goto(`${cfg.base}/app/settings/rules`);
  await axe(page, "rules (none)");
  await page.click("text=Add a rule");
  await page.waitForURL("**/app/settings/rules/new");
  await axe(page, "new rule");
  // A bad regular expression is refused with the validation's reason, the form kept.
  await page.fill("input[name=name]", "tests to support");
  await page.selectOption("select[name=field1]", "subject");
  await page.selectOption("select[name=op1]", "regex");
  await page.fill("input[name=values1]", "(unclosed");
  await page.selectOption("select[name=team]", "support");
  await page.click("button:has-text('Save rule')");
  const refusedRule = await page.textContent("[role=alert]").catch(() => "");
  check(/Not saved/.test(refusedRule) && /regex|regular expression|unclosed/i.test(refusedRule), `a bad regular expression is refused with the reason: ${refusedRule}`);
  check((await page.inputValue("input[name=values1]")) === "(unclosed", "the refused form keeps what was typed");
  await axe(page, "rule refused");
  await page.selectOption("select[name=op1]", "contains_any_word");
  await page.fill("input[name=values1]", "test");
  await page.click("button:has-text('Save rule')");
  await page.waitForURL("**/app/settings/rules?**");
  check((await page.textContent("[role=status]")).includes('Saved rule "tests to support"'), "the rule is saved");
  // A second rule, then moved above the first.
  await page.click("text=Add a rule");
  await page.fill("input[name=name]", "vip senders");
  await page.selectOption("select[name=field1]", "sender_domain");
  await page.selectOption("select[name=op1]", "equals");
  await page.fill("input[name=values1]", "vip.test");
  await page.selectOption("select[name=team]", "support");
  await page.fill("input[name=priority]", "high");
  await page.click("button:has-text('Save rule')");
  await page.waitForURL("**/app/settings/rules?**");
  await page.click("button[aria-label='Move up vip senders']");
  await page.waitForURL("**/app/settings/rules?**");
  const order = await page.$$eval("tr[data-rule]", (rows) => rows.map((r) => r.dataset.rule));
  check(order.join("|") === "vip senders|tests to support", `the rules are in the new order: ${order}`);
  // A change by position made from a page that is out of date is refused, not misapplied.
  const token = await page.getAttribute("meta[name=csrf-token]", "content");
  const stale = await page.request.post(`${cfg.base}/app/settings/rules/1/up`, { form: { _csrf: token, version: "1" } });
  check((await stale.text()).includes("Not changed: the workspace changed since this page was shown"), "a stale move is refused");
  await page.reload();
  const still = await page.$$eval("tr[data-rule]", (rows) => rows.map((r) => r.dataset.rule));
  check(still.join("|") === "vip senders|tests to support", `a stale move changes nothing: ${still}`);
  // Try it: which rule takes a pasted message, and why.
  await page.selectOption("select[name=inbox]", cfg.inbox);
  await page.fill("textarea[name=raw]", `From: Val <val@vip.test>\nTo: ${cfg.inbox}\nSubject: a test of the rules\nMessage-ID: <try-1@vip.test>\n\nHello`);
  await page.click("button:has-text('Which rule matches?')");
  const tried = await page.textContent("#try-result");
  check(/Rule vip senders decides: team support/.test(tried), `try it names the deciding rule: ${tried}`);
  check(/tests to support: not reached/.test(tried), `try it says the later rule was not reached: ${tried}`);
  await axe(page, "rules with a try");
  await page.screenshot({ path: join(cfg.shots, "settings-rules.png"), fullPage: true });
  await page.goto(`${cfg.base}/app/settings/inboxes/${cfg.inbox}`);

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

  // Try it on a recent message: the customer's mail the verification's poll brought in.
  await page.goto(`${cfg.base}/app/settings/rules`);
  const options = await page.$$eval("select[name=message] option", (os) => os.map((o) => o.textContent));
  check(options.some((o) => o.includes("val@vip.test")) && !options.some((o) => /Mailroom test message/.test(o)), `recent messages: the customer's, no test message: ${options}`);
  await page.selectOption("select[name=message]", { label: options.find((o) => o.includes("val@vip.test")) });
  await page.click("button:has-text('Which rule matches this one?')");
  const triedRecent = await page.textContent("#try-result");
  check(/Rule vip senders decides/.test(triedRecent), `try it on a recent message: ${triedRecent}`);
  await axe(page, "rules with a recent message tried");

  // Users and teams.
  await page.goto(`${cfg.base}/app/settings/people`);
  await axe(page, "users and teams");
  await page.fill("form.stack input[name=email]", "carol@acme.test");
  await page.fill("form.stack input[name=name]", "Carol");
  await page.click("button:has-text('Add user')");
  check((await page.textContent("[role=status]")).includes("Saved carol@acme.test"), "a user is added");
  await page.fill("input[name=id][pattern]", "billing");
  await page.fill("form:has(input[name=id][pattern]) input[name=name]", "Billing");
  await page.click("button:has-text('Add team')");
  check((await page.textContent("[role=status]")).includes("Saved team billing"), "a team is added");
  await page.check("form[data-team=billing] input[name=member][value='carol@acme.test']");
  await page.selectOption("form[data-team=billing] select[name=assign]", "round_robin");
  await page.click("button:has-text('Save team billing')");
  check(await page.isChecked("form[data-team=billing] input[name=member][value='carol@acme.test']"), "carol is in billing");
  check((await page.textContent("tr[data-user='carol@acme.test']")).includes("billing"), "carol's row names her team");
  await axe(page, "users and teams after changes");

  // My notifications (an admin also sees the team's).
  await page.goto(`${cfg.base}/app/settings/notifications`);
  await axe(page, "notifications (admin)");
  await page.uncheck("input[name=mention]");
  await page.check("input[name=digest]");
  await page.click("button:has-text('Save my notifications')");
  check(await page.isChecked("input[name=digest]"), "the daily digest is on after the save");
  check((await page.textContent("[role=status]")).includes("Saved your notifications"), "notifications saved");
  check(!(await page.isChecked("input[name=mention]")) && (await page.isChecked("input[name=assigned]")), "mention off, assigned still on");
  check((await page.textContent("table")).includes("bob@acme.test"), "an admin sees the team's notifications");

  // A non-admin: 404 on every settings page.
  const agent = await (await browser.newContext()).newPage();
  await agent.goto(cfg.agentLink);
  for (const path of ["/app/settings", "/app/settings/inboxes/new", `/app/settings/inboxes/${cfg.inbox}`, "/app/settings/rules", "/app/settings/rules/new", "/app/settings/people"]) {
    const r = await agent.goto(`${cfg.base}${path}`);
    check(r.status() === 404, `a non-admin gets 404 on ${path} (got ${r.status()})`);
  }
  // ... but their own notifications: yes, without the team's.
  const mine = await agent.goto(`${cfg.base}/app/settings/notifications`);
  check(mine.status() === 200 && (await agent.$("table")) === null, "an agent sees their own notifications only");
  await walk.audit(agent, "notifications (agent)");
  await agent.uncheck("input[name=customer_reply]");
  await agent.click("button:has-text('Save my notifications')");
  check(!(await agent.isChecked("input[name=customer_reply]")), "an agent changes their own notifications");
  const r = await agent.request.post(`${cfg.base}/app/settings/inboxes/${cfg.inbox}/verify`, { form: { _csrf: "x" } });
  check(r.status() === 404 || r.status() === 403, `a non-admin cannot start a verification (got ${r.status()})`);
} catch (e) {
  check(false, `the walk broke: ${e.stack || e}`);
} finally {
  await browser.close();
}
walk.finish();
