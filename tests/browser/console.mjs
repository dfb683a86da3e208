// Drives the web console in a headless Chromium like a person would, and prints what it
// saw as one JSON object on stdout. Used by tests/integration/console/browser.rs, which
// checks the result and the server's state.
//
//   node console.mjs <base URL> <scenario JSON> [screenshot dir]
//
// The scenario names the account to create and the files to upload (see browser.rs).
// Every page is watched for CSP violations (the `securitypolicyviolation` event and
// Chromium's "Refused to …" console errors) and for uncaught errors.
import { chromium } from "playwright-core";

const [base, scenarioText, shots] = process.argv.slice(2);
const scenario = JSON.parse(scenarioText);
const result = { steps: [], violations: [], errors: [], pages: {} };
const step = (name) => {
  result.steps.push(name);
  process.stderr.write(`console.mjs: ${name}\n`);
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox"],
});
try {
  const context = await browser.newContext({ viewport: { width: 1100, height: 760 } });
  // Collected in the page (before any of its scripts) and read back after each step.
  await context.addInitScript(() => {
    window.__violations = [];
    document.addEventListener("securitypolicyviolation", (e) => {
      window.__violations.push(`${e.violatedDirective} ${e.blockedURI}`);
    });
  });
  const page = await context.newPage();
  page.on("console", (msg) => {
    if (msg.type() === "error") {
      const text = msg.text();
      if (/Content.Security.Policy|Refused to/i.test(text)) result.violations.push(text);
      else result.errors.push(text);
    }
  });
  page.on("pageerror", (err) => result.errors.push(String(err)));

  const collect = async () => {
    const seen = await page.evaluate(() => window.__violations.splice(0));
    result.violations.push(...seen);
  };
  const shot = async (name) => {
    if (shots) await page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });
  };
  const visit = async (path, name) => {
    const response = await page.goto(base + path);
    result.pages[path] = {
      status: response.status(),
      csp: response.headers()["content-security-policy"] || null,
      title: await page.title(),
    };
    await collect();
    if (name) await shot(name);
  };

  // Sign up (a new organisation and its admin) through the form.
  step("sign up");
  await visit("/sign-up", "sign-up");
  await page.getByLabel("Organisation name").fill(scenario.tenant);
  await page.getByLabel("Handle").fill(scenario.handle);
  await page.getByLabel("Your name").fill(scenario.name);
  await page.getByLabel("Email").fill(scenario.email);
  await page.getByLabel("Password").fill(scenario.password);
  await Promise.all([page.waitForURL(base + "/files"), page.getByRole("button", { name: "Create and sign in" }).click()]);
  await collect();
  result.signed_in_as = await page.locator(".who").textContent();

  // Every section of the navigation opens, by keyboard-reachable links.
  step("pages");
  for (const [path, name] of [
    ["/files", "files"],
    ["/devices", "devices"],
    ["/audit", null],
    ["/analytics", null],
    ["/admin", null],
    ["/docs", null],
  ]) {
    await visit(path, name);
  }
  result.nav = await page.locator("nav[aria-label=Main] a").allTextContents();
  result.devices_lists_this_browser = (await page.goto(base + "/devices"), await page.getByText("this browser").count()) > 0;

  // Sign out; the session is gone, so /files goes back to the sign-in page.
  step("sign out");
  await Promise.all([page.waitForURL(base + "/sign-in"), page.getByRole("button", { name: "Sign out" }).click()]);
  await shot("sign-in");
  await page.goto(base + "/files");
  result.after_sign_out = new URL(page.url()).pathname;
  await collect();
  step("done");
} catch (err) {
  result.failure = String(err && err.stack ? err.stack : err);
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
