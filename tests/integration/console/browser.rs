//! The console end to end in a headless Chromium (Debian's `/usr/bin/chromium`, driven
//! by playwright-core from tests/browser) against a real `chronicle serve`: what a
//! person does, with every page watched for CSP violations.
//!
//! Screenshots: set `CONSOLE_SCREENSHOTS=<dir>` to keep the pages' screenshots there
//! (docs/console/ holds the ones docs/console.md shows).

use chronicle::app::Mode;
use serde_json::{Value, json};

use crate::common::{PASSWORD, TestApp};

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

fn browser_dir() -> &'static std::path::Path {
    std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser"))
}

/// node, `npm ci` in tests/browser and /usr/bin/chromium: required in CI (.ci/run
/// installs them), a loud skip elsewhere.
fn browser_available(test: &str) -> bool {
    let node = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let installed = browser_dir().join("node_modules/playwright-core").is_dir();
    let chromium = std::path::Path::new("/usr/bin/chromium").exists();
    let ready = node && installed && chromium;
    if !ready {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: node, tests/browser/node_modules and /usr/bin/chromium are required in CI"
        );
        eprintln!(
            "!!! SKIPPED {test}: needs node, `npm ci` in tests/browser and /usr/bin/chromium !!!"
        );
    }
    ready
}

/// Runs tests/browser/console.mjs with `scenario`; its JSON report.
async fn drive(t: &TestApp, scenario: Value) -> Value {
    let base = t.base.clone();
    let shots = std::env::var("CONSOLE_SCREENSHOTS").unwrap_or_default();
    let out = tokio::task::spawn_blocking(move || {
        let mut command = std::process::Command::new("node");
        command
            .current_dir(browser_dir())
            .args(["console.mjs", &base, &scenario.to_string()]);
        if !shots.is_empty() {
            command.arg(&shots);
        }
        command.output().unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the browser failed: {stderr}");
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{stderr}", String::from_utf8_lossy(&out.stdout)));
    assert!(
        report["failure"].is_null(),
        "{}\n{stderr}",
        report["failure"].as_str().unwrap_or_default()
    );
    report
}

#[tokio::test]
async fn a_person_signs_up_browses_and_signs_out_in_a_real_browser() {
    if !browser_available("a_person_signs_up_browses_and_signs_out_in_a_real_browser") {
        return;
    }
    let t = TestApp::spawn(Mode::Serve, &[("WORKER_CONCURRENCY", "2")]).await;
    let report = drive(
        &t,
        json!({
            "tenant": "Acme", "handle": "ada", "name": "Ada Lovelace",
            "email": "ada@example.com", "password": PASSWORD,
        }),
    )
    .await;
    assert_eq!(report["violations"], json!([]), "CSP violations: {report}");
    assert_eq!(report["errors"], json!([]), "script errors: {report}");
    assert_eq!(report["signed_in_as"], "ada (admin)");
    assert_eq!(
        report["nav"],
        json!([
            "Files",
            "History & audit",
            "Analytics",
            "Admin",
            "Devices",
            "API docs"
        ])
    );
    for (path, seen) in report["pages"].as_object().unwrap() {
        assert_eq!(seen["status"], 200, "{path}: {seen}");
        assert_eq!(seen["csp"], CSP, "{path}");
    }
    assert_eq!(report["devices_lists_this_browser"], true);
    assert_eq!(report["after_sign_out"], "/sign-in");
}
