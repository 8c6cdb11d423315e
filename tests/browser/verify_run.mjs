// Headless Chromium: an admin presses "Send a test email" on an inbox's settings page and
// waits for the run to end (tests/tests/it/settings.rs runs it against servers it breaks).
//
//   node verify_run.mjs CONFIG.json
//
// CONFIG: base, adminLink, inbox, shots, name (for the screenshot). Prints one JSON line
// {outcome, steps: [{step, status, detail}], ...}; exit 0 when the run ended and axe-core
// found nothing on its page (whatever the run's outcome: the caller judges it), 1
// otherwise, 2 when chromium or the config is missing.
import { join } from "node:path";
import { chromium } from "playwright-core";
import { setup, Walk } from "./lib.mjs";

const { cfg, executablePath } = setup("verify_run.mjs");
const walk = new Walk();
let result = {};
const browser = await chromium.launch({ executablePath, args: ["--no-sandbox"] });
try {
  const page = await (await browser.newContext()).newPage();
  page.setDefaultTimeout(15_000);
  await page.goto(cfg.adminLink);
  await page.goto(`${cfg.base}/app/settings/inboxes/${cfg.inbox}`);
  await page.click("button:has-text('Send a test email')");
  await page.waitForSelector("[data-outcome=passed], [data-outcome=failed]", { timeout: 90_000 });
  result.outcome = await page.getAttribute("[data-outcome]", "data-outcome");
  result.steps = await page.$$eval("[data-step]", (els) =>
    els.map((e) => ({ step: e.dataset.step, status: e.dataset.status, detail: (e.querySelector(".detail") || {}).textContent || "" })),
  );
  await walk.audit(page, `verification (${cfg.name})`);
  await page.screenshot({ path: join(cfg.shots, `settings-verify-${cfg.name}.png`), fullPage: true });
} catch (e) {
  walk.check(false, `the walk broke: ${e.stack || e}`);
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(result) + "\n");
walk.finish();
