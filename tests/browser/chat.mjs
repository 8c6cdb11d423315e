// Live chat in two browsers at once (docs/chat.md): a visitor on a site of another origin
// that embeds the widget, and an agent in the web inbox, both on one `mailroom serve`.
//
//   node chat.mjs CONFIG.json
//
// CONFIG (written by tests/tests/it/chat.rs): base, site (the visitor's page), siteOrigin,
// adminLink, agentLink, visitorName, visitorEmail, firstLine, replyText, greeting, shots.
//
// Checks: the admin's live-chat settings show the widget's embed code, and a new greeting
// saved there is what the visitor reads; the visitor's first line appears in the agent's list within 2 s without a
// reload; typing shows both ways within 2 s; the agent's reply from the composer reaches
// the visitor within 2 s; a reload of the visitor's page resumes the chat with its
// history; axe-core finds nothing on either page (the widget's shadow root included).
// Prints one JSON line with the measured delays; exit 1 when a check failed.
import { join } from "node:path";
import { chromium } from "playwright-core";
import { Walk, setup } from "./lib.mjs";

const { cfg, executablePath } = setup("chat.mjs");
const walk = new Walk();
const check = walk.check.bind(walk);
const timings = {};
const errors = [];
const LIVE = 2_000;

/// How long until `fn` resolves truthy, or null after `max` ms.
async function within(max, fn) {
  const t = Date.now();
  while (Date.now() - t < max) {
    if (await fn().catch(() => false)) return Date.now() - t;
    await new Promise((r) => setTimeout(r, 50));
  }
  return null;
}

const browser = await chromium.launch({ executablePath, args: ["--no-sandbox"] });
try {
  // The admin sets the widget's greeting on the settings page; the embed code is there.
  const adminCtx = await browser.newContext();
  const admin = await adminCtx.newPage();
  admin.on("pageerror", (e) => errors.push(`admin: ${e.message}`));
  await admin.goto(cfg.adminLink);
  await admin.waitForURL(/\/app\//);
  await admin.goto(`${cfg.base}/app/settings/chat`);
  const embed = (await admin.textContent('[data-embed="site"]')) || "";
  check(embed.includes(`${cfg.base}/chat/v1/widget.js`) && embed.includes('data-widget="site"'), `the settings page shows the embed code (${embed})`);
  await walk.audit(admin, "the live-chat settings");
  await admin.fill('[data-widget="site"] input[name=greeting]', cfg.greeting);
  const origins = await admin.inputValue('[data-widget="site"] textarea[name=allowed_origins]');
  check(origins.includes(cfg.siteOrigin), `the allowed sites are listed (${origins})`);
  await admin.click('[data-widget="site"] button.primary');
  const saved = await admin.textContent(".notice");
  check(saved && saved.includes("Saved chat widget site"), `the widget is saved (${saved})`);
  await admin.screenshot({ path: join(cfg.shots, "chat-settings.png"), fullPage: true });
  await adminCtx.close();

  const agentCtx = await browser.newContext();
  const visitorCtx = await browser.newContext();
  const agent = await agentCtx.newPage();
  const visitor = await visitorCtx.newPage();
  for (const [p, label] of [[agent, "agent"], [visitor, "visitor"]]) {
    p.on("pageerror", (e) => errors.push(`${label}: ${e.message}`));
    p.on("console", (m) => m.type() === "error" && errors.push(`${label}: ${m.text()}`));
  }

  // The agent signs in and keeps the inbox open; its live socket connects.
  await agent.goto(cfg.agentLink);
  await agent.waitForURL(/\/app\/$/);
  check(await within(5_000, () => agent.evaluate(() => document.body.dataset.live === "on")) !== null, "the agent's page opens its live socket");

  // The visitor opens the chat on the shop's page and says who they are.
  await visitor.goto(cfg.site);
  await visitor.click("button.launch");
  await visitor.fill("input[name=name]", cfg.visitorName);
  await visitor.fill("input[name=email]", cfg.visitorEmail);
  await visitor.click(".who-form button[type=submit]");
  await visitor.waitForSelector(".msg-form:not([hidden]) textarea", { timeout: 5_000 });
  const greeting = await visitor.textContent(".log .greeting");
  check(greeting === cfg.greeting, `the widget greets the visitor as the admin set it (${greeting})`);
  await walk.audit(visitor, "the visitor's page with the chat open");

  // The first line: in the agent's list within 2 s, no reload.
  await visitor.fill("textarea[name=text]", cfg.firstLine);
  await visitor.press("textarea[name=text]", "Enter");
  const subject = `Chat with ${cfg.visitorName}`;
  timings.visitorToAgentList = await within(LIVE, () => agent.getByText(subject).first().isVisible());
  check(timings.visitorToAgentList !== null, `the chat shows in the agent's list within ${LIVE} ms (${timings.visitorToAgentList})`);

  // The agent opens it: the visitor's line, channel chat.
  await agent.getByText(subject).first().click();
  await agent.waitForSelector("#conv-pane", { timeout: 10_000 });
  check(await within(5_000, () => agent.getByText(cfg.firstLine).first().isVisible()) !== null, "the agent reads the visitor's line");
  await within(5_000, () => agent.evaluate(() => document.body.dataset.live === "on"));
  await agent.waitForTimeout(300);

  // Typing, both ways.
  await visitor.type("textarea[name=text]", "And do", { delay: 20 });
  timings.visitorTypingToAgent = await within(LIVE, async () => ((await agent.textContent("#live-typing")) || "").includes("is typing"));
  check(timings.visitorTypingToAgent !== null, `the agent sees the visitor typing within ${LIVE} ms (${timings.visitorTypingToAgent})`);
  await agent.click("[data-reply]");
  await agent.type("[data-reply]", cfg.replyText, { delay: 5 });
  timings.agentTypingToVisitor = await within(LIVE, async () => ((await visitor.textContent(".status")) || "").includes("is typing"));
  check(timings.agentTypingToVisitor !== null, `the visitor sees the agent typing within ${LIVE} ms (${timings.agentTypingToVisitor})`);
  await walk.audit(agent, "the agent's chat conversation");

  // The agent's reply from the composer reaches the visitor live.
  await agent.click("button.primary:has-text('Send reply')");
  timings.agentReplyToVisitor = await within(LIVE, async () =>
    (await visitor.locator(".log .agent").allTextContents()).some((t) => t.includes(cfg.replyText)),
  );
  check(timings.agentReplyToVisitor !== null, `the reply reaches the visitor within ${LIVE} ms (${timings.agentReplyToVisitor})`);
  await visitor.screenshot({ path: join(cfg.shots, "chat-visitor.png") });
  await agent.screenshot({ path: join(cfg.shots, "chat-agent.png") });

  // A reload keeps the chat: the widget reopens with its history.
  await visitor.reload();
  const resumed = await within(5_000, async () => {
    const lines = await visitor.locator(".log .visitor, .log .agent").allTextContents();
    return lines.some((t) => t.includes(cfg.firstLine)) && lines.some((t) => t.includes(cfg.replyText));
  });
  check(resumed !== null, "after a reload the visitor has the chat's history");
  await walk.audit(visitor, "the visitor's page after a reload");
} finally {
  await browser.close();
}
check(errors.length === 0, `no script errors: ${JSON.stringify(errors)}`);
process.stdout.write(JSON.stringify({ timings }) + "\n");
walk.finish();
