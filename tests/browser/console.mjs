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
let current = "start";
const step = (name) => {
  current = name;
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
    // Every toast shown (they fade after a few seconds).
    window.__toasts = [];
    new MutationObserver((changes) => {
      for (const change of changes)
        for (const node of change.addedNodes)
          if (node.classList && node.classList.contains("toast")) window.__toasts.push(node.textContent);
    }).observe(document, { childList: true, subtree: true });
  });
  const page = await context.newPage();
  page.on("console", (msg) => {
    if (msg.type() === "error") {
      const text = msg.text();
      if (/Content.Security.Policy|Refused to/i.test(text)) result.violations.push(`${current} (${page.url()}): ${text.slice(0, 80)}`);
      else result.errors.push(`${current}: ${text}`);
    }
  });
  page.on("pageerror", (err) => result.errors.push(`${current}: ${err}`));

  const collect = async () => {
    const seen = await page.evaluate(() => window.__violations.splice(0));
    result.violations.push(...seen.map((v) => `${current} (${page.url()}): ${v}`));
  };
  const shot = async (name) => {
    // caret/animations as they are: Playwright would otherwise inject a <style>, which
    // the CSP blocks (and this script reports as a violation).
    if (shots) await page.screenshot({ path: `${shots}/${name}.png`, fullPage: true, caret: "initial", animations: "allow" });
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
  await Promise.all([page.waitForURL(base + "/files"), page.getByRole("button", { name: "Sign up and sign in" }).click()]);
  await collect();
  result.signed_in_as = await page.locator(".who").textContent();

  if (scenario.files) {
    // Three files chosen at once; the second chunk of the large one is cut (the network
    // fails that request once), so its upload must retry and resume.
    step("upload");
    let cut = 0;
    await page.route("**/v1/uploads/**", async (route) => {
      const request = route.request();
      const offset = Number(request.headers()["upload-offset"] || 0);
      if (request.method() === "PATCH" && offset > 0 && cut === 0) {
        cut++;
        await route.abort("connectionreset");
      } else {
        await route.continue();
      }
    });
    await page.evaluate(() => (window.__same_page = true));
    await page.setInputFiles("#file-input", scenario.files);
    // And one dropped on the drop zone: the EICAR test file, which must show "virus found".
    const drop = await page.evaluateHandle((text) => {
      const transfer = new DataTransfer();
      transfer.items.add(new File([text], "eicar.com", { type: "application/octet-stream" }));
      return transfer;
    }, scenario.eicar);
    await page.dispatchEvent("#drop-zone", "drop", { dataTransfer: drop });
    const names = scenario.files.map((f) => f.split("/").pop()).concat(["eicar.com"]);
    await page.waitForFunction(
      (count) => {
        const rows = [...document.querySelectorAll("#uploads li.upload")];
        return rows.length === count && rows.every((r) => ["completed", "virus_failed", "duplicate", "failed"].includes(r.dataset.state));
      },
      names.length,
      { timeout: 120000 },
    );
    result.cut = cut;
    result.uploads = await page.$$eval("#uploads li.upload", (rows) =>
      rows.map((r) => ({
        name: r.dataset.name,
        state: r.dataset.state,
        shown: r.querySelector("[data-status]").textContent,
        retries: Number(r.dataset.retries || 0),
        file_id: r.dataset.fileId || null,
        progress: r.querySelector("progress").value,
        meta: r.querySelector("[data-meta]").textContent,
      })),
    );
    // The table below follows without a reload.
    await page.waitForFunction(
      (names) => names.every((n) => document.querySelector("#file-list").textContent.includes(n)),
      names,
      { timeout: 30000 },
    );
    result.same_page = await page.evaluate(() => window.__same_page === true);
    result.toasts = await page.evaluate(() => window.__toasts.slice());
    await page.unroute("**/v1/uploads/**");
    await collect();
    await shot("files");

    // Search narrows the table (htmx swaps it as one types).
    step("search");
    await page.getByLabel("Search").fill(scenario.search);
    await page.waitForFunction(
      (q) => {
        const rows = [...document.querySelectorAll("#file-list tbody tr")];
        return rows.length === 1 && rows[0].textContent.includes(q);
      },
      scenario.search,
      { timeout: 15000 },
    );
    result.search_rows = await page.locator("#file-list tbody tr").count();

    // The image's page: its preview, a tag and a new name, through the API.
    step("file page");
    const image = result.uploads.find((u) => u.name === scenario.image);
    await visit(`/files/${image.file_id}`);
    await page.waitForFunction(() => {
      const img = document.querySelector("img.thumb");
      return img && img.complete;
    }, null, { timeout: 15000 });
    result.preview_width = await page.$eval("img.thumb", (img) => img.naturalWidth);
    await page.getByLabel("Add a tag").fill("holiday");
    await page.getByRole("button", { name: "Add", exact: true }).click();
    await page.waitForSelector("li.chip:has-text('holiday')", { timeout: 15000 });
    await page.getByLabel("Name", { exact: true }).fill("beach.png");
    await page.getByRole("button", { name: "Rename" }).click();
    await page.waitForFunction(() => document.querySelector("h1").textContent === "beach.png", null, { timeout: 15000 });
    // A link (its URL shown once), a legal hold that stops the trash, then the trash.
    const expires = new Date(Date.now() + 24 * 3600 * 1000);
    const local = new Date(expires.getTime() - expires.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
    await page.getByLabel("Expires").fill(local);
    await page.getByLabel("Max downloads").fill("3");
    await page.getByRole("button", { name: "Create link" }).click();
    await page.waitForSelector("#link-shown", { timeout: 15000 });
    result.link_shown = await page.locator("#link-shown").textContent();
    await page.waitForSelector("text=of 3", { timeout: 15000 });
    await page.getByLabel("Reason").fill("audit 2026");
    await page.getByRole("button", { name: "Place a hold" }).click();
    await page.waitForSelector(".badge:has-text('legal hold: audit 2026')", { timeout: 15000 });
    page.on("dialog", (dialog) => dialog.accept());
    await page.getByRole("button", { name: "Move to the trash" }).click();
    await page.waitForFunction(() => window.__toasts.some((t) => /hold/i.test(t) && !/placed/i.test(t)), null, { timeout: 15000 });
    result.trash_while_held = await page.evaluate(() => window.__toasts.filter((t) => /hold/i.test(t)));
    await page.getByRole("button", { name: "Release the hold" }).click();
    await page.waitForSelector("text=Not held.", { timeout: 15000 });
    await page.getByRole("button", { name: "Move to the trash" }).click();
    await page.waitForSelector(".badge:has-text('in the trash')", { timeout: 15000 });
    await page.getByRole("button", { name: "Restore from the trash" }).click();
    await page.waitForSelector("button:has-text('Move to the trash')", { timeout: 15000 });
    result.file_page = {
      heading: await page.locator("h1").textContent(),
      tags: await page.locator("li.chip").allTextContents(),
      versions: await page.locator("#versions-heading + .table-wrap tbody tr").count(),
    };
    await collect();
    await shot("file");

    // A reload in the middle of an upload: dropping the same file again continues
    // where the server stands (tus-js-client's fingerprint), not from the start.
    step("reload and resume");
    await visit("/files");
    let blocking = true;
    await page.route("**/v1/uploads/**", async (route) => {
      const request = route.request();
      const offset = Number(request.headers()["upload-offset"] || 0);
      if (blocking && request.method() === "PATCH" && offset > 0) await route.abort("connectionreset");
      else await route.continue();
    });
    await page.setInputFiles("#file-input", scenario.resume_file);
    await page.waitForSelector("#uploads li.upload[data-retries]", { timeout: 30000 });
    await page.reload();
    blocking = false;
    await page.unroute("**/v1/uploads/**");
    await page.waitForSelector("#unfinished:not([hidden])", { timeout: 10000 });
    result.unfinished_note = await page.locator("#unfinished").textContent();
    await page.setInputFiles("#file-input", scenario.resume_file);
    await page.waitForSelector("#uploads li.upload[data-state=completed]", { timeout: 60000 });
    result.resumed = await page.$eval("#uploads li.upload", (r) => ({
      resumed: r.dataset.resumed === "true",
      from: Number(r.dataset.from),
      file_id: r.dataset.fileId,
    }));
    await collect();

    // Another tenant's file id in the URL: 404, like an id that does not exist.
    step("foreign id");
    const foreign = await page.goto(`${base}/files/${scenario.foreign_file}`);
    result.foreign_status = foreign.status();
    await collect();
  }

  // Every section of the navigation opens, by keyboard-reachable links.
  step("pages");
  for (const [path, name] of [
    ["/files", scenario.files ? null : "files"],
    ["/devices", "devices"],
    ["/audit", null],
    ["/analytics", null],
    ["/admin", null],
    ["/docs", null],
  ]) {
    await visit(path, name);
  }
  result.nav = await page.locator("nav[aria-label=Main] a").allTextContents();
  // The same Files page on a phone.
  await page.setViewportSize({ width: 390, height: 844 });
  await visit("/files", "files-phone");
  result.phone_overflow = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth + 1);
  await page.setViewportSize({ width: 1100, height: 760 });
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
  try {
    const page = browser.contexts()[0].pages()[0];
    result.failure += "\ntoasts: " + JSON.stringify(await page.evaluate(() => window.__toasts));
    result.failure += "\nat " + page.url() + ": " + (await page.locator("main").innerText()).slice(0, 1500);
  } catch (_) {}
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
