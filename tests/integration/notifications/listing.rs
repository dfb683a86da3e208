//! Notifications for the file's owner only, newest first with cursors, unread filter,
//! read once (and only by the recipient), and rebuilds that reproduce both tables.

use chronicle::aggregates::file::Original;
use chronicle::aggregates::{FileCommand, Notification, NotificationCommand};
use chronicle::app::Mode;
use chronicle::commands;
use chronicle::ids::{TenantId, UserId};
use chronicle::projections::{self, rebuild::rebuild, runtime};
use chronicle::store::{Actor, ChronicleStore, EventLog, EventMetadata};
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{Files, account, app, wait_for_rows};
use crate::common::{TestApp, TestDb, eventually_some, table_contents, unique_redis_prefix};

async fn get(t: &TestApp, access: &str, query: &str) -> (StatusCode, Value) {
    let r = t
        .http
        .get(t.url(&format!("/v1/notifications{query}")))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap())
}

async fn mark_read(t: &TestApp, access: &str, id: &str) -> (StatusCode, String) {
    let r = t
        .http
        .post(t.url(&format!("/v1/notifications/{id}/read")))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap())
}

fn kinds(page: &Value) -> Vec<&str> {
    let items = page["items"].as_array().unwrap();
    items.iter().map(|n| n["kind"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn each_kind_reaches_the_owner_and_nobody_else() {
    let t = app(Mode::Serve, &unique_redis_prefix()).await;
    let ada = account(&t, "ada").await;
    let eve = account(&t, "eve").await; // another tenant
    let files = Files::new(&t.db.app, ada.tenant);
    let file = files.create(ada.user, "q3.pdf").await;
    files.upload(file, 1, "abc").await;
    files.complete(file, 1, "abc").await; // version_completed
    files.upload(file, 2, "abc").await;
    let duplicate = FileCommand::RecordDuplicate {
        version_number: 2,
        original: Original::ThisFile { version_number: 1 },
    };
    files.run(file, duplicate).await; // duplicate
    files.upload(file, 3, "x5o").await;
    let virus = FileCommand::FailVirusScan {
        version_number: 3,
        signature: "Eicar-Test-Signature".into(),
    };
    files.run(file, virus).await; // virus_found
    files.upload(file, 4, "zzz").await;
    for attempt in 1..=2 {
        if attempt == 2 {
            let again = FileCommand::StartProcessing {
                version_number: 4,
                attempt,
            };
            files.run(file, again).await;
        }
        let fail = FileCommand::FailProcessing {
            version_number: 4,
            attempt,
            max_attempts: 2,
            reason: "optimizer crashed at /srv/chronicle/tmp/x".into(),
        };
        files.run(file, fail).await; // queued, then processing_failed
    }
    // A colleague's file in the same tenant: not Ada's business.
    let colleague = UserId::new();
    files.completed_file(colleague, "theirs.pdf").await;

    // uploaded+processing per version (8), completed, duplicate, virus, queued,
    // processing (attempt 2), failed.
    wait_for_rows(&t.db.worker, ada.user, 14).await;
    wait_for_rows(&t.db.worker, colleague, 3).await;
    let (status, page) = get(&t, &ada.access, "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        kinds(&page),
        [
            "processing_failed",
            "virus_found",
            "duplicate",
            "version_completed"
        ],
        "newest first, status-only rows not listed: {page}"
    );
    let items = page["items"].as_array().unwrap();
    assert_eq!(items[0]["status"], "failed");
    assert_eq!(items[0]["details"], json!({"attempt": 2}));
    assert!(
        !page.to_string().contains("/srv"),
        "worker reasons stay internal"
    );
    assert_eq!(items[1]["details"]["signature"], "Eicar-Test-Signature");
    assert_eq!(items[1]["status"], "virus_failed");
    assert_eq!(items[2]["details"]["duplicate_of_version"], 1);
    assert_eq!(
        items[2]["message"],
        "\"q3.pdf\" version 2 duplicates version 1"
    );
    assert_eq!(items[3]["version_number"], 1);
    assert_eq!(items[3]["file_id"], file.to_string());
    assert_eq!(items[3]["file_name"], "q3.pdf");
    assert!(items.iter().all(|n| n["read_at"].is_null()));
    assert_eq!(page["unread_count"], 4);
    assert!(page["next_cursor"].is_null());

    // The status trail of version 4 is in the table for the live stream.
    let trail: Vec<String> = sqlx::query_scalar(
        "SELECT status::text FROM notifications WHERE file_id = $1 AND version_number = 4
          ORDER BY transaction_id, global_position",
    )
    .bind(file.0)
    .fetch_all(&t.db.worker)
    .await
    .unwrap();
    assert_eq!(
        trail,
        ["uploaded", "processing", "queued", "processing", "failed"]
    );

    // Another tenant sees nothing, not even a count.
    let (_, page) = get(&t, &eve.access, "").await;
    assert_eq!(page["items"], json!([]));
    assert_eq!(page["unread_count"], 0);
    t.app.stop().await;
}

#[tokio::test]
async fn pages_unread_filter_and_reading_once() {
    let t = app(Mode::Serve, &unique_redis_prefix()).await;
    let ada = account(&t, "ada").await;
    let eve = account(&t, "eve").await;
    let files = Files::new(&t.db.app, ada.tenant);
    for i in 0..5 {
        files.completed_file(ada.user, &format!("f{i}")).await;
    }
    let colleague = UserId::new();
    files.completed_file(colleague, "theirs").await;
    wait_for_rows(&t.db.worker, ada.user, 15).await;
    wait_for_rows(&t.db.worker, colleague, 3).await;

    // Pages of two: 2 + 2 + 1, newest first, no overlap.
    let mut names = vec![];
    let mut query = "?limit=2".to_string();
    loop {
        let (status, page) = get(&t, &ada.access, &query).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        for n in page["items"].as_array().unwrap() {
            names.push(n["file_name"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => query = format!("?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(names, ["f4", "f3", "f2", "f1", "f0"]);

    let (_, page) = get(&t, &ada.access, "").await;
    let newest = page["items"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(
        mark_read(&t, &ada.access, &newest).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        mark_read(&t, &ada.access, &newest).await.0,
        StatusCode::NO_CONTENT
    );
    let recorded: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_type = 'notification' AND aggregate_id = $1",
    )
    .bind(&newest)
    .fetch_one(&t.db.owner)
    .await
    .unwrap();
    assert_eq!(recorded, 1, "reading twice records once");

    let page = eventually_some("the read is projected", async || {
        let (_, page) = get(&t, &ada.access, "?unread=true").await;
        (page["unread_count"] == 4).then_some(page)
    })
    .await;
    assert_eq!(kinds(&page).len(), 4);
    assert!(
        page.to_string().find(&newest).is_none(),
        "read one filtered out"
    );
    let (_, all) = get(&t, &ada.access, "").await;
    assert!(all["items"][0]["read_at"].is_string());

    // Someone else's notification, a status-only row, an unknown or malformed id: 404.
    let theirs: uuid::Uuid = sqlx::query_scalar(
        "SELECT id FROM notifications WHERE recipient_id = $1 AND kind = 'version_completed'",
    )
    .bind(colleague.0)
    .fetch_one(&t.db.worker)
    .await
    .unwrap();
    let status_row: uuid::Uuid = sqlx::query_scalar(
        "SELECT id FROM notifications WHERE recipient_id = $1 AND kind = 'version_status' LIMIT 1",
    )
    .bind(ada.user.0)
    .fetch_one(&t.db.worker)
    .await
    .unwrap();
    for id in [
        theirs.to_string(),
        status_row.to_string(),
        uuid::Uuid::now_v7().to_string(),
        "nope".into(),
    ] {
        let (status, body) = mark_read(&t, &ada.access, &id).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{id}");
        assert!(body.contains("\"code\":\"not_found\""), "{body}");
    }
    // Another tenant cannot mark Ada's either.
    assert_eq!(
        mark_read(&t, &eve.access, &newest).await.0,
        StatusCode::NOT_FOUND
    );

    // Bad input: one error shape, nothing changed.
    for (query, status, code) in [
        (
            "?limit=0",
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            "?limit=101",
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        ("?limit=ten", StatusCode::BAD_REQUEST, "bad_request"),
        ("?cursor=abc", StatusCode::BAD_REQUEST, "bad_request"),
        ("?unread=maybe", StatusCode::BAD_REQUEST, "bad_request"),
    ] {
        let (got, body) = get(&t, &ada.access, query).await;
        assert_eq!(
            (got, body["error"]["code"].as_str()),
            (status, Some(code)),
            "{query}"
        );
    }
    let r = t.http.get(t.url("/v1/notifications")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    t.app.stop().await;
}

/// Every recipient's `notification_unread` row (those not zero) against the count it
/// stands for, computed from the rows themselves; returns the counters.
pub(super) async fn assert_unread_is_the_count(db: &TestDb) -> Vec<(uuid::Uuid, uuid::Uuid, i64)> {
    let counted: Vec<(uuid::Uuid, uuid::Uuid, i64)> = sqlx::query_as(
        "SELECT tenant_id, recipient_id, count(*) FROM notifications
          WHERE kind <> 'version_status' AND read_at IS NULL GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .fetch_all(&db.owner)
    .await
    .unwrap();
    let kept: Vec<(uuid::Uuid, uuid::Uuid, i64)> = sqlx::query_as(
        "SELECT tenant_id, recipient_id, unread FROM notification_unread
          WHERE unread <> 0 ORDER BY 1, 2",
    )
    .fetch_all(&db.owner)
    .await
    .unwrap();
    assert_eq!(
        kept, counted,
        "notification_unread is the count of unread rows"
    );
    kept
}

/// The unread counters a tenant's API connection sees: the app role, row-level security.
async fn unread_seen_by(db: &TestDb, tenant: TenantId) -> Vec<(uuid::Uuid, i64)> {
    let mut tx = db.as_tenant(tenant.0).await;
    let seen = sqlx::query_as("SELECT recipient_id, unread FROM notification_unread ORDER BY 1")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    seen
}

/// The rebuild test also holds the unread counter (what `unread_count` reads, migration
/// 0056) to the count of unread rows through inserts, read marks, repeated marks,
/// damage, an operator's repairs and the rebuild's empty-and-refill.
#[tokio::test]
async fn a_rebuild_reproduces_notifications_and_read_state() {
    let db = TestDb::new().await;
    let projector = projections::by_name("notifications").expect("registered");
    runtime::register(&db.worker, std::slice::from_ref(&projector))
        .await
        .unwrap();
    let (tenant, owner) = (TenantId::new(), UserId::new());
    let files = Files::new(&db.app, tenant);
    // Another tenant's user, whose counter nothing below may move.
    let (other_tenant, other) = (TenantId::new(), UserId::new());
    Files::new(&db.app, other_tenant)
        .completed_file(other, "theirs")
        .await;
    let mut ids = vec![];
    for i in 0..3 {
        let file = files.completed_file(owner, &format!("f{i}")).await;
        let rename = FileCommand::Rename {
            display_name: format!("renamed {i}"),
        };
        files.run(file, rename).await;
        files.upload(file, 2, &format!("v2-{i}")).await;
        files.complete(file, 2, &format!("v2-{i}")).await;
        ids.push(file);
    }
    runtime::catch_up(&db.worker, projector.as_ref())
        .await
        .unwrap();
    let before = assert_unread_is_the_count(&db).await;
    assert_eq!(before.len(), 2, "one counter per recipient: {before:?}");
    assert_eq!(unread_seen_by(&db, tenant).await, [(owner.0, 6)]);
    assert_eq!(unread_seen_by(&db, other_tenant).await, [(other.0, 1)]);
    // Read two notifications, one of them twice.
    let read: Vec<uuid::Uuid> = sqlx::query_scalar(
        "SELECT id FROM notifications WHERE kind = 'version_completed' AND recipient_id = $1
          ORDER BY seq LIMIT 2",
    )
    .bind(owner.0)
    .fetch_all(&db.worker)
    .await
    .unwrap();
    let store = ChronicleStore::<Notification>::new(EventLog::new(db.app.clone()), tenant, 5);
    let meta = EventMetadata::new(tenant, Actor::User(owner), "req");
    for id in [read[0], read[1], read[0]] {
        commands::execute(
            &store,
            &id.to_string(),
            NotificationCommand::MarkRead,
            &meta,
            &(),
        )
        .await
        .unwrap();
    }
    runtime::catch_up(&db.worker, projector.as_ref())
        .await
        .unwrap();
    let live = table_contents(&db.worker, "notifications").await;
    let recipients = table_contents(&db.worker, "notification_recipients").await;
    assert_eq!(
        live.len(),
        3 * 6 + 3,
        "the owner's rows and the other user's"
    );
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT file_name FROM notifications WHERE kind = 'version_completed' AND recipient_id = $1
          ORDER BY seq",
    )
    .bind(owner.0)
    .fetch_all(&db.worker)
    .await
    .unwrap();
    assert_eq!(
        names,
        ["f0", "renamed 0", "f1", "renamed 1", "f2", "renamed 2"]
    );
    let seqs: Vec<i64> = sqlx::query_scalar(
        "SELECT seq FROM notifications WHERE recipient_id = $1
          ORDER BY transaction_id, global_position",
    )
    .bind(owner.0)
    .fetch_all(&db.worker)
    .await
    .unwrap();
    assert_eq!(
        seqs,
        (1..=18).collect::<Vec<i64>>(),
        "seq counts rows in catch-up order"
    );
    let read_count: i64 =
        sqlx::query_scalar("SELECT count(*) FROM notifications WHERE read_at IS NOT NULL")
            .fetch_one(&db.worker)
            .await
            .unwrap();
    assert_eq!(read_count, 2);
    assert_unread_is_the_count(&db).await;
    assert_eq!(unread_seen_by(&db, tenant).await, [(owner.0, 4)]);

    // Damage the tables; the rebuild must restore every row exactly.
    sqlx::query("DELETE FROM notifications WHERE seq % 2 = 0")
        .execute(&db.worker)
        .await
        .unwrap();
    assert_unread_is_the_count(&db).await;
    // An operator's repairs: everything unread again, one row given to someone else.
    sqlx::query("UPDATE notifications SET read_at = NULL WHERE recipient_id = $1")
        .bind(owner.0)
        .execute(&db.worker)
        .await
        .unwrap();
    assert_unread_is_the_count(&db).await;
    sqlx::query(
        "UPDATE notifications SET recipient_id = $2
          WHERE id = (SELECT id FROM notifications WHERE recipient_id = $1
                         AND kind = 'version_completed' ORDER BY seq LIMIT 1)",
    )
    .bind(owner.0)
    .bind(UserId::new().0)
    .execute(&db.worker)
    .await
    .unwrap();
    assert_eq!(assert_unread_is_the_count(&db).await.len(), 3);
    sqlx::query("UPDATE notification_recipients SET display_name = 'x'")
        .execute(&db.worker)
        .await
        .unwrap();
    rebuild(&db.worker, projector).await.unwrap();
    assert_eq!(table_contents(&db.worker, "notifications").await, live);
    assert_unread_is_the_count(&db).await;
    assert_eq!(unread_seen_by(&db, tenant).await, [(owner.0, 4)]);
    assert_eq!(unread_seen_by(&db, other_tenant).await, [(other.0, 1)]);
    assert_eq!(
        table_contents(&db.worker, "notification_recipients").await,
        recipients
    );
}
