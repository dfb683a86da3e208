//! The console end to end in a headless Chromium (Debian's `/usr/bin/chromium`, driven
//! by playwright-core from tests/browser) against a real `chronicle serve`: what a
//! person does, with every page watched for CSP violations.
//!
//! Screenshots: set `CONSOLE_SCREENSHOTS=<dir>` to keep the pages' screenshots there
//! (docs/console/ holds the ones docs/console.md shows).

use chronicle::app::Mode;
use serde_json::{Value, json};

use sha2::Digest;

use crate::common::{PASSWORD, TempDir, TestApp, browser_available, browser_dir, bytes_of};

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// Runs tests/browser/console.mjs with `scenario`; its JSON report.
async fn drive(t: &TestApp, scenario: Value) -> Value {
    drive_script(t, "console.mjs", scenario).await
}

/// Runs the browser script `script` (in tests/browser) with `scenario`; its JSON report,
/// which must name no failure.
pub(super) async fn drive_script(t: &TestApp, script: &'static str, scenario: Value) -> Value {
    let base = t.base.clone();
    let shots = std::env::var("CONSOLE_SCREENSHOTS").unwrap_or_default();
    let out = tokio::task::spawn_blocking(move || {
        let mut command = std::process::Command::new("node");
        command
            .current_dir(browser_dir())
            .args([script, &base, &scenario.to_string()]);
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

/// The EICAR test string: every scanner calls it a virus.
const EICAR: &str = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

/// A small PNG, for the preview.
fn png() -> Vec<u8> {
    let img = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 * 4, y as u8 * 5, 120]));
    let mut png = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    png
}

#[tokio::test]
async fn a_person_uploads_and_manages_files_in_a_real_browser() {
    if !browser_available("a_person_uploads_and_manages_files_in_a_real_browser") {
        return;
    }
    let t = TestApp::spawn(Mode::Serve, &[("WORKER_CONCURRENCY", "2")]).await;
    // Another tenant's file, whose id the browser then tries.
    let other = t.signup("zed").await;
    let foreign = t
        .upload_ok(&other, "secret.txt", b"not yours".to_vec())
        .await;
    let dir = TempDir::new();
    let big = bytes_of(7, 3 * 1024 * 1024 + 12_345);
    let files = [
        ("big.bin", big.clone()),
        ("notes.txt", b"meeting notes: bring the charts".to_vec()),
        ("photo.png", png()),
    ];
    let resume = bytes_of(9, 2 * 1024 * 1024 + 777);
    let resume_path = dir.0.join("resume.bin");
    std::fs::write(&resume_path, &resume).unwrap();
    let mut paths = Vec::new();
    for (name, bytes) in &files {
        let path = dir.0.join(name);
        std::fs::write(&path, bytes).unwrap();
        paths.push(path.display().to_string());
    }
    let report = drive(
        &t,
        json!({
            "tenant": "Acme", "handle": "ada", "name": "Ada Lovelace",
            "email": "ada@example.com", "password": PASSWORD,
            "files": paths, "eicar": EICAR, "image": "photo.png", "search": "notes",
            "foreign_file": foreign["file_id"],
            "resume_file": resume_path.display().to_string(),
        }),
    )
    .await;
    assert_eq!(report["violations"], json!([]), "CSP violations: {report}");
    // The only failed loads are the ones the scenario causes: the cut chunks, the trash
    // refused under a legal hold (409), and the other tenant's file (404).
    let unexpected: Vec<&Value> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            let e = e.as_str().unwrap();
            !(e.ends_with("Failed to load resource: net::ERR_CONNECTION_RESET")
                && (e.starts_with("upload: ") || e.starts_with("reload and resume: "))
                || e == "file page: Failed to load resource: the server responded with a status of 409 (Conflict)"
                || e == "foreign id: Failed to load resource: the server responded with a status of 404 (Not Found)")
        })
        .collect();
    assert!(unexpected.is_empty(), "script errors: {unexpected:?}");
    assert_eq!(report["signed_in_as"], "ada (admin)");

    // Uploads: all done without a reload; the cut one retried and resumed.
    assert_eq!(report["cut"], 1, "{report}");
    assert_eq!(report["same_page"], true, "no reload");
    let uploads = report["uploads"].as_array().unwrap();
    let by_name = |name: &str| uploads.iter().find(|u| u["name"] == name).unwrap().clone();
    for name in ["big.bin", "notes.txt", "photo.png"] {
        let u = by_name(name);
        assert_eq!(
            (u["state"].as_str(), u["shown"].as_str()),
            (Some("completed"), Some("completed")),
            "{u}"
        );
        assert_eq!(u["progress"], 100.0, "{u}");
    }
    assert!(
        by_name("big.bin")["retries"].as_u64().unwrap() >= 1,
        "the cut upload resumed: {report}"
    );
    assert!(
        by_name("big.bin")["meta"]
            .as_str()
            .unwrap()
            .contains("resumed")
    );
    let eicar = by_name("eicar.com");
    assert_eq!(
        (eicar["state"].as_str(), eicar["shown"].as_str()),
        (Some("virus_failed"), Some("virus found")),
        "{eicar}"
    );
    let toasts = report["toasts"].as_array().unwrap();
    assert!(toasts.len() >= 4, "a toast per notification: {toasts:?}");
    assert!(
        toasts
            .iter()
            .any(|t| t.as_str().unwrap().to_lowercase().contains("virus")),
        "{toasts:?}"
    );

    // The server holds exactly what was sent.
    let big_id: uuid::Uuid = by_name("big.bin")["file_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let (sha, size): (String, i64) = sqlx::query_as(
        "SELECT sha256, size_bytes FROM file_versions WHERE file_id = $1 AND version_number = 1",
    )
    .bind(big_id)
    .fetch_one(&t.db.owner)
    .await
    .unwrap();
    assert_eq!(size, big.len() as i64);
    assert_eq!(sha, hex::encode(sha2::Sha256::digest(&big)));

    // After a reload, the same file dropped again continued where the server stood.
    assert!(
        report["unfinished_note"]
            .as_str()
            .unwrap()
            .contains("resume.bin"),
        "{report}"
    );
    assert_eq!(report["resumed"]["resumed"], true, "{report}");
    assert!(
        report["resumed"]["from"].as_u64().unwrap() >= 1024 * 1024,
        "{report}"
    );
    let resumed_id: uuid::Uuid = report["resumed"]["file_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let sha: String = sqlx::query_scalar(
        "SELECT sha256 FROM file_versions WHERE file_id = $1 AND version_number = 1 AND status = 'completed'",
    )
    .bind(resumed_id)
    .fetch_one(&t.db.owner)
    .await
    .unwrap();
    assert_eq!(sha, hex::encode(sha2::Sha256::digest(&resume)));
    assert_eq!(
        report["phone_overflow"], false,
        "the Files page fits a phone's width"
    );

    // Search, the file page (preview, tag, rename through the API) and isolation.
    assert_eq!(report["search_rows"], 1);
    assert_eq!(
        report["preview_width"].as_u64().map(|w| w > 0),
        Some(true),
        "{report}"
    );
    assert_eq!(report["file_page"]["heading"], "beach.png");
    assert!(
        report["file_page"]["tags"].to_string().contains("holiday"),
        "{report}"
    );
    assert!(
        report["link_shown"].as_str().unwrap().contains("/l/"),
        "{report}"
    );
    assert!(
        report["trash_while_held"]
            .to_string()
            .contains("legal hold"),
        "{report}"
    );
    assert_eq!(report["foreign_status"], 404);

    for (path, seen) in report["pages"].as_object().unwrap() {
        assert_eq!(seen["status"], 200, "{path}: {seen}");
        assert_eq!(seen["csp"], CSP, "{path}");
    }
    assert_eq!(report["devices_lists_this_browser"], true);
    assert_eq!(report["after_sign_out"], "/sign-in");
}
