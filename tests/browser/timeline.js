// Drives callgate's call timeline page in Debian's chromium through playwright-core, for
// tests/it/replay.rs. Usage:
//   node timeline.js <admin base URL> <search term> <leg id> <screenshot dir>
// Prints one JSON object with what the page showed; exits non-zero on any failure.
"use strict";
const { chromium } = require("playwright-core");
const path = require("path");

const [base, term, legId, shots] = process.argv.slice(2);

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
      "--disable-background-networking", "--disable-extensions", "--no-first-run"],
  });
  const result = {};
  try {
    const page = await browser.newPage({ viewport: { width: 1440, height: 1000 } });
    const consoleErrors = [];
    const requests = [];
    page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
    page.on("pageerror", (e) => consoleErrors.push(String(e)));
    page.on("request", (r) => requests.push(r.url()));
    await page.goto(base + "/admin/timeline");
    await page.fill("[data-testid=q]", term);
    await page.click("[data-testid=search]");
    await page.waitForSelector("[data-testid=timeline-svg]");
    await page.waitForSelector("[data-testid=detail-event]");
    result.status = await page.textContent("[data-testid=status]");
    result.title = await page.textContent("[data-testid=title]");
    result.calls = await page.locator("[data-testid=call]").count();
    result.dots = await page.locator("[data-testid=event-dot]").evaluateAll((ds) => ds.map((d) => d.getAttribute("class")));
    result.lanes = await page.locator("#chart .lane-label").allTextContents();
    result.types = await page.locator("[data-testid=event-type]").allTextContents();
    result.fates = await page.locator("[data-testid=event-fates]").allTextContents();
    // The held event: its detail.
    const held = result.types.indexOf("call.held");
    await page.locator("[data-testid=event-dot]").nth(held).click();
    result.held_verdict = await page.textContent("[data-testid=detail-verdict]");
    result.held_fates = await page.textContent("[data-testid=fates]");
    result.held_payload = JSON.parse(await page.textContent("[data-testid=detail-payload]"));
    result.held_event = JSON.parse(await page.textContent("[data-testid=detail-event]"));
    await page.screenshot({ path: path.join(shots, "timeline.png"), fullPage: true });

    // Straight to one leg by its id.
    await page.goto(base + "/admin/timeline?call=" + encodeURIComponent(legId));
    await page.waitForFunction(() => document.getElementById("status").textContent.startsWith("call "));
    result.leg_types = await page.locator("[data-testid=event-type]").allTextContents();
    // An id the archive does not have.
    await page.goto(base + "/admin/timeline?call=no-such-call");
    await page.waitForFunction(() => document.getElementById("status").className === "bad");
    result.missing = await page.textContent("[data-testid=status]");
    result.console_errors = consoleErrors.filter((e) => !e.includes("404"));
    result.foreign_requests = requests.filter((u) => !u.startsWith(base) && !u.startsWith("data:"));
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(result) + "\n");
})().catch((e) => {
  process.stderr.write(String(e && e.stack || e) + "\n");
  process.exit(1);
});
