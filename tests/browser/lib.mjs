// What the browser walks share: the config, Debian's chromium, the checks and axe-core.
import { accessSync, constants, mkdirSync, readFileSync } from "node:fs";

/// The walk's config (argv[2]) and chromium's path; exits 2 when either is missing.
export function setup(script) {
  const cfgPath = process.argv[2];
  if (!cfgPath) {
    process.stderr.write(`usage: node ${script} CONFIG.json\n`);
    process.exit(2);
  }
  const cfg = JSON.parse(readFileSync(cfgPath, "utf8"));
  const executablePath = chromiumPath();
  mkdirSync(cfg.shots, { recursive: true });
  return { cfg, executablePath };
}

/// Debian's chromium (or $CHROMIUM); exits 2 when it is missing.
export function chromiumPath() {
  const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
  try {
    accessSync(executablePath, constants.X_OK);
  } catch {
    process.stderr.write(`chromium not found at ${executablePath}: install Debian's chromium (apt-get install chromium)\n`);
    process.exit(2);
  }
  return executablePath;
}

const axeSource = readFileSync(new URL("./node_modules/axe-core/axe.min.js", import.meta.url), "utf8");

/// axe-core (WCAG 2.x A/AA and best practices) on the page: its findings.
export async function axeViolations(page) {
  if (!(await page.evaluate(() => typeof window.axe !== "undefined"))) {
    await page.evaluate(axeSource);
  }
  return page.evaluate(async () => {
    const res = await window.axe.run(document, {
      iframes: false,
      resultTypes: ["violations"],
      runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"] },
    });
    return res.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target.join(" ")).slice(0, 5) }));
  });
}

/// The checks of one walk, axe-core's findings by page, and the report at the end.
export class Walk {
  constructor() {
    this.steps = [];
    this.failures = [];
    this.axe = {};
  }

  check(ok, what) {
    this.steps.push({ what, ok: !!ok });
    if (!ok) this.failures.push(what);
  }

  /// axe-core on the page: any finding fails.
  async audit(page, name) {
    const r = await axeViolations(page);
    this.axe[name] = r;
    this.check(r.length === 0, `axe-core finds nothing on ${name}: ${JSON.stringify(r)}`);
  }

  /// One JSON line on stdout; exit 1 with the reasons on stderr when a check failed.
  finish() {
    process.stdout.write(JSON.stringify({ steps: this.steps, axe: this.axe }) + "\n");
    if (this.failures.length) {
      process.stderr.write(this.failures.join("\n") + "\n");
      process.exit(1);
    }
  }
}
