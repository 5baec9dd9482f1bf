// Drives callgate's mapping playground in Debian's chromium through playwright-core, for
// tests/it/playground.rs. Usage:
//   node playground.js <admin base URL> <payload file> <screenshot dir>
// Prints one JSON object with what the page showed; exits non-zero on any failure.
"use strict";
const { chromium } = require("playwright-core");
const fs = require("fs");
const path = require("path");

const [base, payloadFile, shots] = process.argv.slice(2);
const TEMPLATE = "vidyo/templates/user-status.json.hbs";

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
      "--disable-background-networking", "--disable-extensions", "--no-first-run"],
  });
  const result = {};
  try {
    const page = await browser.newPage({ viewport: { width: 1440, height: 1100 }, acceptDownloads: true });
    const consoleErrors = [];
    page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
    page.on("pageerror", (e) => consoleErrors.push(String(e)));
    await page.goto(base + "/admin/playground");
    await page.waitForFunction(() => document.getElementById("status").textContent.startsWith("snapshot v"));
    result.status = await page.textContent("[data-testid=status]");
    result.fixtures = await page.locator("[data-testid=fixture] option").count();
    // The cases offered follow the chosen source, grouped by the vendor they go to.
    const groups = () => page.locator("[data-testid=fixture] optgroup").evaluateAll((gs) => gs.map((g) => g.label));
    await page.selectOption("[data-testid=from]", "vidyo");
    result.fixture_groups_vidyo = await groups();
    await page.selectOption("[data-testid=from]", "auto");
    result.fixtures_auto = await page.locator("[data-testid=fixture] option").count();

    // A RingCentral notification into Vidyo.
    await page.selectOption("[data-testid=from]", "ringcentral");
    await page.selectOption("[data-testid=to]", "vidyo");
    await page.fill("[data-testid=payload]", fs.readFileSync(payloadFile, "utf8"));
    await page.click("[data-testid=translate]");
    await page.waitForSelector("[data-testid=event-type]");
    result.types = await page.locator("[data-testid=event-type]").allTextContents();
    result.verdicts = await page.locator("[data-testid=verdict]").allTextContents();
    result.outputs = (await page.locator("[data-testid=output-body]").allTextContents()).map((t) => JSON.parse(t));
    result.errors_before = await page.locator("[data-testid=error]").count();
    result.fixture_groups_ringcentral = await groups();
    result.absent = await page.locator("[data-testid=absent]").allTextContents();
    // Save as case: the download is a case file for the current input and output.
    const [download] = await Promise.all([page.waitForEvent("download"), page.click("[data-testid=save-case]")]);
    result.case_name = download.suggestedFilename();
    result.case_yaml = fs.readFileSync(await download.path(), "utf8");
    await page.screenshot({ path: path.join(shots, "playground.png"), fullPage: true });

    // Break the Vidyo template on line 5: a field the canonical model lacks, refused at load.
    await page.selectOption("[data-testid=file]", TEMPLATE);
    const original = await page.inputValue("[data-testid=editor]");
    const lines = original.split("\n");
    lines[4] = lines[4] + "{{data.no_such_field}}";
    await page.fill("[data-testid=editor]", lines.join("\n"));
    await page.click("[data-testid=translate]");
    await page.waitForSelector("[data-testid=error-where]");
    result.edited = await page.textContent("[data-testid=edited]");
    result.error_where = await page.locator("[data-testid=error-where]").allTextContents();
    result.error_text = await page.locator("[data-testid=error]").allTextContents();
    result.outcomes_after = await page.locator("[data-testid=outcome]").allTextContents();
    await page.screenshot({ path: path.join(shots, "playground-error.png"), fullPage: true });

    // The live tail panel shows what already went through the gateway.
    await page.click("[data-testid=tail-toggle]");
    await page.waitForFunction(() =>
      [...document.querySelectorAll("[data-testid=tail-line]")].some((l) => l.textContent.includes("delivered")));
    result.tail = await page.locator("[data-testid=tail-line]").allTextContents();
    result.console_errors = consoleErrors;
    await page.screenshot({ path: path.join(shots, "playground-tail.png"), fullPage: true });
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(result) + "\n");
})().catch((e) => {
  process.stderr.write(String(e && e.stack || e) + "\n");
  process.exit(1);
});
