// Drives the console's history, analytics, admin and API reference pages in a headless
// Chromium like an auditor and an admin would, and prints what it saw as one JSON object
// on stdout. Used by tests/integration/console/pages.rs, which checks it against the
// server's state.
//
//   node console-pages.mjs <base URL> <scenario JSON> [screenshot dir]
//
// The scenario names the credentials of an auditor, an admin and a user of one tenant, a
// file of theirs, a file of another tenant and a person whose role the admin changes. Every page is watched
// for CSP violations and uncaught errors, as in console.mjs.
import { chromium } from "playwright-core";

const [base, scenarioText, shots] = process.argv.slice(2);
const scenario = JSON.parse(scenarioText);
const result = { steps: [], violations: [], errors: [], pages: {} };
const step = (name) => {
  result.steps.push(name);
  process.stderr.write(`console-pages.mjs: ${name}\n`);
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox"],
});

// The URLs the test opens because they must be refused (403 or 404): the browser logs
// their failed load, which is not a script error.
const refusals = new Set();
const refused = async (page, url) => {
  refusals.add(url);
  return (await page.goto(url)).status();
};

// A browser context signed in as `who`, watched for CSP violations and script errors.
const signedIn = async (who, viewport = { width: 1100, height: 760 }) => {
  const context = await browser.newContext({ viewport });
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
      // A refusal the test asks for on purpose logs a failed resource load.
      else if (!(/^Failed to load resource/.test(text) && refusals.has(msg.location().url))) result.errors.push(text);
    }
  });
  page.on("pageerror", (err) => result.errors.push(String(err)));
  await page.goto(base + "/sign-in");
  await page.getByLabel("Email").fill(who.email);
  await page.getByLabel("Password").fill(who.password);
  await Promise.all([page.waitForURL(base + "/files"), page.getByRole("button", { name: "Sign in" }).click()]);
  return page;
};

const collect = async (page) => {
  const seen = await page.evaluate(() => window.__violations.splice(0));
  result.violations.push(...seen);
};
const shot = async (page, name) => {
  if (shots) await page.screenshot({ path: `${shots}/${name}.png`, fullPage: true, caret: "initial", animations: "allow" });
};
const visit = async (page, path, name) => {
  const response = await page.goto(base + path);
  result.pages[path] = { status: response.status(), csp: response.headers()["content-security-policy"] || null };
  await collect(page);
  if (name) await shot(page, name);
  return response;
};
const nameShown = (page) => page.locator("#as-of dt:text-is('Name') + dd").textContent();

try {
  step("auditor signs in");
  const auditor = await signedIn(scenario.auditor);

  step("audit log");
  await visit(auditor, "/audit", "audit");

  step("a file's history");
  await visit(auditor, `/audit/files/${scenario.file_id}`);
  result.timeline_entries = await auditor.locator("ol.timeline > li").count();
  result.verified_marks = await auditor.locator("ol.timeline .mark.ok").count();
  result.name_now = (await nameShown(auditor)).trim();
  await shot(auditor, "history");

  step("time travel to the first version with the slider");
  await Promise.all([auditor.waitForURL(/[?&]at=1$/), auditor.locator("#at").fill("1")]);
  await collect(auditor);
  result.name_at_first = (await nameShown(auditor)).trim();

  step("verify");
  await auditor.goto(base + "/audit");
  await Promise.all([auditor.waitForURL(/\/audit\/verify/), auditor.getByRole("button", { name: "Verify" }).click()]);
  result.pages["/audit/verify"] = { status: 200 };
  await collect(auditor);
  result.verdict = (await auditor.locator("#verdict").textContent()).trim();
  await shot(auditor, "verify");

  step("export");
  const exported = await auditor.request.get(base + "/v1/audit/export");
  result.export_status = exported.status();
  result.export_lines = (await exported.text()).split("\n").filter((l) => l.trim()).length;

  step("another tenant's file");
  result.other_tenant_status = await refused(auditor, `${base}/audit/files/${scenario.other_file_id}`);
  await collect(auditor);
  await auditor.goto(base + "/audit");
  refusals.add(`${base}/audit/files/${scenario.other_file_id}`);
  await auditor.getByLabel("A file's history, by id").fill(scenario.other_file_id);
  const [answer] = await Promise.all([
    auditor.waitForResponse((r) => r.url().includes(`/audit/files/${scenario.other_file_id}`)),
    auditor.getByRole("button", { name: "Open" }).click(),
  ]);
  result.other_tenant_by_form_status = answer.status();

  step("analytics");
  await visit(auditor, "/analytics");
  await auditor.waitForSelector("body[data-charts-drawn]", { state: "attached", timeout: 15000 });
  result.canvases = await auditor.locator(".chart canvas").count();
  const data = await auditor.evaluate(async () => (await fetch("/analytics/data.json")).json());
  result.uploads_points = data.uploads_daily.days.length;
  result.uploads_total = data.uploads_daily.uploads.reduce((a, b) => a + b, 0);
  await collect(auditor);
  await shot(auditor, "analytics");

  step("API docs");
  await visit(auditor, "/docs");
  await auditor.waitForSelector(".swagger-ui .info .title", { timeout: 20000 });
  result.swagger_title = (await auditor.locator(".swagger-ui .info .title").textContent()).trim();
  await collect(auditor);
  if (shots) await auditor.screenshot({ path: `${shots}/docs.png` });

  step("on a phone");
  await auditor.setViewportSize({ width: 390, height: 800 });
  await visit(auditor, `/audit/files/${scenario.file_id}`);
  result.phone_overflow = await auditor.evaluate(() => document.documentElement.scrollWidth > window.innerWidth + 1);
  await shot(auditor, "history-phone");

  step("a tampered history, seen by its tenant's admin");
  const bob = await signedIn(scenario.other_admin);
  await visit(bob, `/audit/files/${scenario.other_file_id}`);
  result.tampered_ok_marks = await bob.locator("ol.timeline .mark.ok").count();
  result.tampered_bad_marks = await bob.locator("ol.timeline .mark.bad").count();
  result.tampered_first_bad = (await bob.locator("ol.timeline .mark.bad").first().textContent()).trim();
  await shot(bob, "history-tampered");
  await visit(bob, "/audit/verify");
  result.tampered_verdict = (await bob.locator("#verdict").textContent()).trim();
  await shot(bob, "verify-tampered");

  step("a user is refused the auditors' and admins' pages");
  const user = await signedIn(scenario.user);
  result.user_nav = await user.locator("nav[aria-label=Main] a").allTextContents();
  result.user_statuses = {};
  for (const path of ["/audit", `/audit/files/${scenario.file_id}`, "/audit/verify", "/analytics", "/analytics/data.json", "/admin"]) {
    result.user_statuses[path] = await refused(user, base + path);
  }
  result.bad_id_status = await refused(auditor, base + "/audit/files/not-a-file-id");

  step("admin changes a role");
  const admin = await signedIn(scenario.admin);
  await visit(admin, "/admin");
  await admin.getByLabel(`Role of ${scenario.dave}`).selectOption("auditor");
  await Promise.all([
    admin.waitForURL(base + "/admin?done=role"),
    admin.getByRole("button", { name: `Change role of ${scenario.dave}` }).click(),
  ]);
  await collect(admin);
  result.role_done = (await admin.locator("#done").textContent()).trim();
  await shot(admin, "admin");

  step("admin creates an API key, shown once");
  await admin.getByLabel("Name").fill("backup robot");
  await Promise.all([admin.waitForURL(base + "/admin/api-keys"), admin.getByRole("button", { name: "Create key" }).click()]);
  await collect(admin);
  result.key_shown = (await admin.locator("#secret-value").textContent()).trim();
  step("done");
} catch (err) {
  result.failure = `${String(err && err.stack ? err.stack : err)}\nerrors: ${result.errors.join("\n")}\nviolations: ${result.violations.join("\n")}`;
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
