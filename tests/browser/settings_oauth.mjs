// Headless-Chromium walk: an admin adds Gmail and Microsoft 365 inboxes on the settings
// pages, through each provider's sign-in (the mocks of tests/src), on a running
// `mailroom serve`, with axe-core on every page.
//
//   node settings_oauth.mjs CONFIG.json
//
// CONFIG (written by tests/tests/it/settings.rs): base, adminLink, shots, and per
// provider {provider: "gmail" | "graph", wrong, right}: `wrong` is an inbox the mock's
// consenting account is not (refused, with the reason), `right` the one it is (connected).
// Prints one JSON line; exit 0 when every check passed, 1 otherwise, 2 when chromium or
// the config is missing.
import { join } from "node:path";
import { chromium } from "playwright-core";
import { setup, Walk } from "./lib.mjs";

const { cfg, executablePath } = setup("settings_oauth.mjs");
const walk = new Walk();

async function addInbox(page, provider, address) {
  await page.goto(`${cfg.base}/app/settings/inboxes/new`);
  await page.fill("input[name=address]", address);
  await page.selectOption("select[name=provider]", provider);
  await page.click("button:has-text('Test and connect')");
  // A page that names the mailbox to sign in as, then the provider's sign-in and our
  // callback, back to the inbox's page.
  await page.waitForSelector("#continue");
  walk.check((await page.textContent("h1")).includes(address), `the sign-in page names ${address}`);
  await walk.audit(page, `${provider} sign-in page`);
  await page.click("#continue");
  await page.waitForURL(`**/app/settings/inboxes/${address}?**`);
  return (await page.textContent("[role=status]")) || "";
}

const browser = await chromium.launch({ executablePath, args: ["--no-sandbox"] });
let page;
try {
  page = await (await browser.newContext()).newPage();
  page.setDefaultTimeout(15_000);
  await page.goto(cfg.adminLink);
  for (const p of cfg.providers) {
    const refused = await addInbox(page, p.provider, p.wrong);
    walk.check(/Not connected/.test(refused) && refused.includes(p.wrong), `${p.provider}: consent from another mailbox is refused with the reason: ${refused}`);
    walk.check(/not connected/.test(await page.textContent("main")), `${p.provider}: the refused inbox shows as not connected`);
    await walk.audit(page, `${p.provider} refused`);
    await page.screenshot({ path: join(cfg.shots, `settings-${p.provider}-refused.png`), fullPage: true });

    const connected = await addInbox(page, p.provider, p.right);
    walk.check(/^Connected: /.test(connected) && connected.includes(p.right), `${p.provider}: connected: ${connected}`);
    await walk.audit(page, `${p.provider} connected`);
  }
  await page.goto(`${cfg.base}/app/settings`);
  const list = await page.textContent("table");
  for (const p of cfg.providers) {
    walk.check(list.includes(p.right) && list.includes(p.wrong), `${p.provider}: both inboxes are listed`);
  }
  await walk.audit(page, "inboxes with OAuth inboxes");
  await page.screenshot({ path: join(cfg.shots, "settings-oauth-inboxes.png"), fullPage: true });
} catch (e) {
  const where = page ? `${page.url()}: ${(await page.textContent("body").catch(() => "")).slice(0, 600)}` : "";
  walk.check(false, `the walk broke: ${e.stack || e}\nat ${where}`);
} finally {
  await browser.close();
}
walk.finish();
