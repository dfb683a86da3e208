// Loads a Chronicle link in a headless Chromium's <img> (no Authorization header, no
// cookies: a page on another origin), and prints what the browser saw as JSON:
// {"loaded": bool, "width": n, "height": n}. Used by tests/integration/sharing.rs.
//
//   node img.mjs <link URL> [chromium path, default /usr/bin/chromium]
import { chromium } from "playwright-core";

const [url, executablePath = "/usr/bin/chromium"] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ["--no-sandbox"],
});
try {
  const page = await browser.newPage();
  await page.setContent("<!doctype html><title>link</title>");
  const seen = await page.evaluate(
    (src) =>
      new Promise((resolve) => {
        const img = document.createElement("img");
        img.onload = () =>
          resolve({ loaded: true, width: img.naturalWidth, height: img.naturalHeight });
        img.onerror = () => resolve({ loaded: false, width: 0, height: 0 });
        img.src = src;
        document.body.appendChild(img);
      }),
    url,
  );
  console.log(JSON.stringify(seen));
} finally {
  await browser.close();
}
