//! The console's history, analytics, admin and API reference pages end to end in a
//! headless Chromium (tests/browser/console-pages.mjs) against a real `chronicle serve`:
//! an auditor follows a file's history, travels to its first version, verifies the
//! chain, downloads the export and reads the charts; an admin changes a role through the
//! page; another tenant's file is a 404; no page raises a CSP violation.

use chronicle::app::Mode;
use serde_json::{Value, json};

use super::browser::drive_script;
use crate::common::{PASSWORD, TestApp, browser_available, bytes_of, eventually};

#[tokio::test]
async fn an_auditor_verifies_history_and_an_admin_runs_the_tenant_in_a_real_browser() {
    let test = "an_auditor_verifies_history_and_an_admin_runs_the_tenant_in_a_real_browser";
    if !browser_available(test) {
        return;
    }
    // Four accounts sign up and in from one address: more than the default budget.
    let t = TestApp::spawn(
        Mode::Serve,
        &[
            ("WORKER_CONCURRENCY", "2"),
            ("AUTH_RATE_LIMIT_PER_MINUTE", "100"),
        ],
    )
    .await;
    let admin = t.signup("ada").await;
    t.join(&admin.token, "aud", "auditor").await;
    let dave = t.join(&admin.token, "dave", "user").await;
    t.join(&admin.token, "uma", "user").await;

    // A file with a past: uploaded as report.txt, processed, then renamed.
    let file = t.upload_ok(&admin, "report.txt", bytes_of(7, 4096)).await;
    let file_id = file["file_id"].as_str().unwrap().to_string();
    t.settled_status(&file_id, 1).await;
    let r = t
        .http
        .patch(t.url(&format!("/v1/files/{file_id}")))
        .bearer_auth(&admin.token)
        .json(&json!({"display_name": "final.txt"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "rename: {}", r.status());
    // Another tenant's file.
    let bob = t.signup("bob").await;
    let other = t.upload_ok(&bob, "secret.txt", bytes_of(9, 512)).await;
    let other_id = other["file_id"].as_str().unwrap().to_string();
    // … whose second event someone with database access back-dates: its hash no longer
    // matches, and every later link hangs on it.
    crate::audit_fixture::tamper(
        &t.db,
        "UPDATE events SET recorded_at = recorded_at - interval '1 second'
          WHERE aggregate_type = 'file' AND aggregate_id = $1 AND sequence = 2",
        &other_id,
    )
    .await;
    // The people list reads the users table; wait until dave is in it.
    eventually("dave in the users table", async || {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM users WHERE id = $1::uuid")
            .bind(&dave.user_id)
            .fetch_one(&t.db.owner)
            .await
            .unwrap()
            == 1
    })
    .await;

    let report: Value = drive_script(
        &t,
        "console-pages.mjs",
        json!({
            "auditor": {"email": "aud@example.com", "password": PASSWORD},
            "admin": {"email": "ada@example.com", "password": PASSWORD},
            "user": {"email": "uma@example.com", "password": PASSWORD},
            "file_id": file_id,
            "other_file_id": other_id,
            "other_admin": {"email": "bob@example.com", "password": PASSWORD},
            "dave": "dave",
        }),
    )
    .await;
    assert_eq!(report["violations"], json!([]), "CSP violations: {report}");
    assert_eq!(report["errors"], json!([]), "script errors: {report}");
    for (path, seen) in report["pages"].as_object().unwrap() {
        assert_eq!(seen["status"], 200, "{path}: {seen}");
    }
    // The timeline: one entry per event, each verified; created, …, renamed.
    let events: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_type = 'file' AND aggregate_id = $1",
    )
    .bind(&file_id)
    .fetch_one(&t.db.owner)
    .await
    .unwrap();
    assert!(events >= 3, "a file with a past: {events} events");
    assert_eq!(report["timeline_entries"], events, "{report}");
    assert_eq!(report["verified_marks"], events, "{report}");
    assert_eq!(report["name_now"], "final.txt");
    assert_eq!(
        report["name_at_first"], "report.txt",
        "time travel: {report}"
    );
    assert!(
        report["verdict"]
            .as_str()
            .unwrap()
            .contains("The chain verifies"),
        "{report}"
    );
    assert_eq!(report["export_status"], 200);
    assert!(
        report["export_lines"].as_i64().unwrap() >= events,
        "{report}"
    );
    assert_eq!(report["other_tenant_status"], 404);
    assert_eq!(report["other_tenant_by_form_status"], 404);
    assert_eq!(
        report["phone_overflow"], false,
        "the history page fits a phone"
    );
    // The charts: drawn, from data with points.
    assert!(report["canvases"].as_i64().unwrap() >= 3, "{report}");
    assert!(report["uploads_points"].as_i64().unwrap() >= 1, "{report}");
    assert!(report["uploads_total"].as_i64().unwrap() >= 1, "{report}");
    assert!(
        report["swagger_title"]
            .as_str()
            .unwrap()
            .contains("Chronicle"),
        "{report}"
    );
    // In the tampered tenant the timeline marks the first event verified and the
    // back-dated one and all after it broken, and Verify says so.
    assert_eq!(report["tampered_ok_marks"], 1, "{report}");
    assert!(
        report["tampered_bad_marks"].as_i64().unwrap() >= 1,
        "{report}"
    );
    assert!(
        report["tampered_first_bad"]
            .as_str()
            .unwrap()
            .contains("hash_mismatch"),
        "{report}"
    );
    assert!(
        report["tampered_verdict"]
            .as_str()
            .unwrap()
            .contains("does not verify"),
        "{report}"
    );
    // A user sees neither section and is refused each page and the charts' data, as
    // by the API's policy; a malformed id is not found, as in the API.
    assert_eq!(
        report["user_nav"],
        json!(["Files", "Notifications", "Devices", "API docs"]),
        "{report}"
    );
    for (path, status) in report["user_statuses"].as_object().unwrap() {
        assert_eq!(status, 403, "{path} for a user");
    }
    assert_eq!(report["bad_id_status"], 404);
    assert!(
        report["key_shown"].as_str().unwrap().starts_with("chk_"),
        "{report}"
    );
    // The admin changed dave's role through the page: the log has it.
    assert_eq!(report["role_done"], "The role was changed.");
    let role: String = sqlx::query_scalar(
        "SELECT payload->'RoleChanged'->>'role' FROM events
          WHERE aggregate_type = 'user' AND aggregate_id = $1 AND event_type = 'RoleChanged'",
    )
    .bind(&dave.user_id)
    .fetch_one(&t.db.owner)
    .await
    .unwrap();
    assert_eq!(role, "auditor");
}
