//! Marking all notifications read: one `InboxRead` up to the newest unread one, for the
//! caller only; what arrives later stays unread; a read before keeps its time; a rebuild
//! in other batch sizes reproduces the same `read_at`s.

use chronicle::aggregates::{Inbox, InboxCommand, Notification, NotificationCommand};
use chronicle::app::Mode;
use chronicle::commands;
use chronicle::ids::{TenantId, UserId};
use chronicle::projections::{self, rebuild::rebuild, runtime};
use chronicle::store::{Actor, ChronicleStore, EventLog, EventMetadata};
use reqwest::StatusCode;
use serde_json::Value;

use super::listing::assert_unread_is_the_count;
use super::{Files, account, app, wait_for_rows};
use crate::common::{TestApp, TestDb, eventually_some, table_contents, unique_redis_prefix};

async fn inbox(t: &TestApp, access: &str) -> Value {
    let r = t
        .http
        .get(t.url("/v1/notifications"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

async fn post(t: &TestApp, access: Option<&str>, path: &str) -> (StatusCode, String) {
    let mut request = t.http.post(t.url(path));
    if let Some(access) = access {
        request = request.bearer_auth(access);
    }
    let r = request.send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

async fn inbox_reads(db: &TestDb, user: UserId) -> Vec<Value> {
    sqlx::query_scalar(
        "SELECT payload FROM events WHERE aggregate_type = 'inbox' AND aggregate_id = $1
          ORDER BY sequence",
    )
    .bind(user.0.to_string())
    .fetch_all(&db.owner)
    .await
    .unwrap()
}

/// `read_at` of each of the user's notifications, oldest first.
async fn read_ats(db: &TestDb, user: UserId) -> Vec<Option<chrono::DateTime<chrono::Utc>>> {
    sqlx::query_scalar(
        "SELECT read_at FROM notifications WHERE recipient_id = $1 AND kind <> 'version_status'
          ORDER BY seq",
    )
    .bind(user.0)
    .fetch_all(&db.owner)
    .await
    .unwrap()
}

/// The `seq` of the user's newest notification (status rows aside).
async fn newest_seq(db: &TestDb, user: UserId) -> i64 {
    sqlx::query_scalar(
        "SELECT max(seq) FROM notifications WHERE recipient_id = $1 AND kind <> 'version_status'",
    )
    .bind(user.0)
    .fetch_one(&db.owner)
    .await
    .unwrap()
}

/// Records `owner`'s read of all up to `seq`: one `InboxRead`, as the use case does.
async fn read_all_up_to(db: &TestDb, tenant: TenantId, owner: UserId, seq: i64) {
    let meta = EventMetadata::new(tenant, Actor::User(owner), "req");
    let inboxes = ChronicleStore::<Inbox>::new(EventLog::new(db.app.clone()), tenant, 5);
    let command = InboxCommand::ReadUpTo { seq: seq as u64 };
    commands::execute(&inboxes, &owner.0.to_string(), command, &meta, &())
        .await
        .unwrap();
}

/// A notifications projector that marks at most `rows` notifications read per batch,
/// registered.
async fn projector_marking(db: &TestDb, rows: i64) -> std::sync::Arc<dyn projections::Projector> {
    let projector: std::sync::Arc<dyn projections::Projector> = std::sync::Arc::new(
        projections::notifications::NotificationsProjector::default().with_read_budget(rows),
    );
    runtime::register(&db.worker, std::slice::from_ref(&projector))
        .await
        .unwrap();
    projector
}

#[tokio::test]
async fn reading_all_reads_what_the_caller_has_and_nothing_else() {
    let t = app(Mode::Serve, &unique_redis_prefix()).await;
    let ada = account(&t, "ada").await;
    let eve = account(&t, "eve").await;
    let files = Files::new(&t.db.app, ada.tenant);
    for i in 0..4 {
        files.completed_file(ada.user, &format!("f{i}")).await;
    }
    let colleague = UserId::new();
    files.completed_file(colleague, "theirs").await;
    Files::new(&t.db.app, eve.tenant)
        .completed_file(eve.user, "eves")
        .await;
    wait_for_rows(&t.db.worker, ada.user, 12).await;
    wait_for_rows(&t.db.worker, colleague, 3).await;
    wait_for_rows(&t.db.worker, eve.user, 3).await;

    // One read on its own first: it keeps its time.
    let oldest = inbox(&t, &ada.access).await["items"][3]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/v1/notifications/{oldest}/read");
    assert_eq!(
        post(&t, Some(&ada.access), &path).await.0,
        StatusCode::NO_CONTENT
    );
    eventually_some("the single read is projected", async || {
        (inbox(&t, &ada.access).await["unread_count"] == 3).then_some(())
    })
    .await;
    let before = read_ats(&t.db, ada.user).await;

    let (status, body) = post(&t, Some(&ada.access), "/v1/notifications/read").await;
    assert_eq!((status, body.as_str()), (StatusCode::NO_CONTENT, ""));
    let newest_seq = newest_seq(&t.db, ada.user).await;
    assert_eq!(
        inbox_reads(&t.db, ada.user).await,
        [serde_json::json!({"InboxRead": {"up_to_seq": newest_seq}})],
        "one event, up to the newest notification"
    );
    let page = eventually_some("the inbox read is projected", async || {
        let page = inbox(&t, &ada.access).await;
        (page["unread_count"] == 0).then_some(page)
    })
    .await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 4);
    assert!(items.iter().all(|n| n["read_at"].is_string()), "{page}");
    let after = read_ats(&t.db, ada.user).await;
    assert_eq!(after[0], before[0], "the earlier read keeps its time");
    assert!(after[1..].iter().all(|at| at.unwrap() > before[0].unwrap()));

    // Nothing unread: nothing recorded. A read of one read with all: nothing either.
    assert_eq!(
        post(&t, Some(&ada.access), "/v1/notifications/read")
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    let newest = items[0]["id"].as_str().unwrap();
    let path = format!("/v1/notifications/{newest}/read");
    assert_eq!(
        post(&t, Some(&ada.access), &path).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(inbox_reads(&t.db, ada.user).await.len(), 1);
    let single_reads: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_type = 'notification' AND aggregate_id = $1",
    )
    .bind(newest)
    .fetch_one(&t.db.owner)
    .await
    .unwrap();
    assert_eq!(single_reads, 0);

    // What arrives afterwards is unread; the colleague's and the other tenant's are too.
    files.completed_file(ada.user, "later").await;
    eventually_some("the new notification is listed", async || {
        (inbox(&t, &ada.access).await["unread_count"] == 1).then_some(())
    })
    .await;
    assert_eq!(inbox(&t, &eve.access).await["unread_count"], 1);
    assert_eq!(read_ats(&t.db, colleague).await, [None]);
    assert_unread_is_the_count(&t.db).await;

    let (status, body) = post(&t, None, "/v1/notifications/read").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("\"code\":\"token_missing\""), "{body}");
    t.app.stop().await;
}

/// Live, every event is projected in its own batch; the rebuild takes them all in one.
/// `read_at` is the first read that covered the row either way.
#[tokio::test]
async fn a_rebuild_reproduces_the_reads_of_all_in_any_batch_size() {
    let db = TestDb::new().await;
    let projector = projections::by_name("notifications").expect("registered");
    runtime::register(&db.worker, std::slice::from_ref(&projector))
        .await
        .unwrap();
    let (tenant, owner) = (TenantId::new(), UserId::new());
    let files = Files::new(&db.app, tenant);
    let meta = EventMetadata::new(tenant, Actor::User(owner), "req");
    let singles = ChronicleStore::<Notification>::new(EventLog::new(db.app.clone()), tenant, 5);
    let project = async || {
        runtime::catch_up(&db.worker, projector.as_ref())
            .await
            .unwrap()
    };
    for i in 0..3 {
        files.completed_file(owner, &format!("f{i}")).await;
        project().await;
    }
    let ids: Vec<uuid::Uuid> = sqlx::query_scalar(
        "SELECT id FROM notifications WHERE recipient_id = $1 AND kind <> 'version_status'
          ORDER BY seq",
    )
    .bind(owner.0)
    .fetch_all(&db.owner)
    .await
    .unwrap();
    let seq_of_second: i64 = sqlx::query_scalar("SELECT seq FROM notifications WHERE id = $1")
        .bind(ids[1])
        .fetch_one(&db.owner)
        .await
        .unwrap();
    // The second read on its own, then all up to it, then the first on its own (already
    // read by then: its time stays the inbox's), then a file more, unread.
    let read_one = async |id: uuid::Uuid| {
        let command = NotificationCommand::MarkRead;
        commands::execute(&singles, &id.to_string(), command, &meta, &())
            .await
            .unwrap();
    };
    read_one(ids[1]).await;
    project().await;
    read_all_up_to(&db, tenant, owner, seq_of_second).await;
    project().await;
    read_one(ids[0]).await;
    project().await;
    files.completed_file(owner, "later").await;
    project().await;

    let live = table_contents(&db.worker, "notifications").await;
    let ats = read_ats(&db, owner).await;
    assert!(ats[0].is_some() && ats[1].is_some() && ats[2].is_none() && ats[3].is_none());
    assert!(ats[1] < ats[0], "the second was read first, on its own");
    let inbox_at: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT recorded_at FROM events WHERE aggregate_type = 'inbox'")
            .fetch_one(&db.owner)
            .await
            .unwrap();
    assert_eq!(ats[0], Some(inbox_at), "the first read is the inbox's");
    assert_unread_is_the_count(&db).await;

    rebuild(&db.worker, projector).await.unwrap();
    assert_eq!(table_contents(&db.worker, "notifications").await, live);
    assert_unread_is_the_count(&db).await;
}

/// Marks still being applied, as `(below_seq)` of each.
async fn marks(db: &TestDb) -> Vec<i64> {
    sqlx::query_scalar("SELECT below_seq FROM notification_read_marks ORDER BY 1")
        .fetch_all(&db.owner)
        .await
        .unwrap()
}

/// A "mark all read" covering more rows than a batch marks is applied a bounded share
/// per batch — the batch that applies the event, then each batch or idle poll after it —
/// newest rows first, so no inbox, however large, holds the projector (and every other
/// tenant's notifications behind it) for long. The rows end as one statement would have
/// left them; the unread counter follows every share; a rebuild reproduces them.
#[tokio::test]
async fn a_large_inbox_read_is_applied_a_bounded_share_per_batch() {
    let db = TestDb::new().await;
    let projector = projector_marking(&db, 2).await;
    let (tenant, owner, colleague) = (TenantId::new(), UserId::new(), UserId::new());
    let files = Files::new(&db.app, tenant);
    let meta = EventMetadata::new(tenant, Actor::User(owner), "req");
    let singles = ChronicleStore::<Notification>::new(EventLog::new(db.app.clone()), tenant, 5);
    for i in 0..5 {
        files.completed_file(owner, &format!("f{i}")).await;
    }
    files.completed_file(colleague, "theirs").await;
    runtime::catch_up(&db.worker, projector.as_ref())
        .await
        .unwrap();
    let covered: Vec<(uuid::Uuid, i64)> = sqlx::query_as(
        "SELECT id, seq FROM notifications WHERE recipient_id = $1 AND kind <> 'version_status'
          ORDER BY seq",
    )
    .bind(owner.0)
    .fetch_all(&db.owner)
    .await
    .unwrap();
    assert_eq!(covered.len(), 5);
    // The second oldest is read on its own first: it keeps that time.
    commands::execute(
        &singles,
        &covered[1].0.to_string(),
        NotificationCommand::MarkRead,
        &meta,
        &(),
    )
    .await
    .unwrap();
    runtime::catch_up(&db.worker, projector.as_ref())
        .await
        .unwrap();
    let single_at = read_ats(&db, owner).await[1].expect("read on its own");
    read_all_up_to(&db, tenant, owner, covered[4].1).await;
    let inbox_at: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT recorded_at FROM events WHERE aggregate_type = 'inbox'")
            .fetch_one(&db.owner)
            .await
            .unwrap();
    let batch = async || {
        runtime::run_batch(&db.worker, projector.as_ref())
            .await
            .unwrap()
    };
    let (unread, single, inbox) = (None, Some(single_at), Some(inbox_at));

    // The batch that applies the event marks the two newest rows and records the rest.
    // (The event becomes eligible once every older transaction of the cluster ended:
    // other tests' may still run.)
    let first = eventually_some("a batch past the horizon", async || match batch().await {
        runtime::BatchOutcome::Idle => None,
        outcome => Some(outcome),
    })
    .await;
    assert_eq!(first, runtime::BatchOutcome::Applied(1));
    // After each batch: the owner's `read_at`s (oldest first), the marks left, and the
    // unread counter still the count of unread rows.
    let state_is = async |ats: [Option<chrono::DateTime<chrono::Utc>>; 5], left: &[i64]| {
        assert_eq!(read_ats(&db, owner).await, ats);
        assert_eq!(marks(&db).await, left);
        assert_unread_is_the_count(&db).await;
    };
    state_is([unread, single, unread, inbox, inbox], &[covered[3].1]).await;
    // With no event to apply, each poll marks the next share: the row read on its own
    // is counted in the share but keeps its earlier time. The last share removes the
    // mark.
    assert_eq!(batch().await, runtime::BatchOutcome::Deferred);
    state_is([unread, single, inbox, inbox, inbox], &[covered[1].1]).await;
    assert_eq!(batch().await, runtime::BatchOutcome::Deferred);
    state_is([inbox, single, inbox, inbox, inbox], &[]).await;
    assert!(single_at < inbox_at);
    assert_unread_is_the_count(&db).await;
    assert_eq!(batch().await, runtime::BatchOutcome::Idle);
    assert_eq!(read_ats(&db, colleague).await, [None], "only the reader's");

    // A rebuild finishes its marks before swapping its tables in: the same rows.
    let live = table_contents(&db.worker, "notifications").await;
    rebuild(&db.worker, projector).await.unwrap();
    assert_eq!(table_contents(&db.worker, "notifications").await, live);
    assert_eq!(marks(&db).await, Vec::<i64>::new());
    assert_unread_is_the_count(&db).await;
}

/// Live, the running projector finishes a read of all on its own, share after share,
/// with no further event to wake it: the shares run on its idle polls. Two instances
/// compete for the projector, as in a deployment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_projector_finishes_a_large_inbox_read_without_new_events() {
    let db = TestDb::new().await;
    let projector = projector_marking(&db, 1).await;
    let (tenant, owner) = (TenantId::new(), UserId::new());
    let files = Files::new(&db.app, tenant);
    for i in 0..6 {
        files.completed_file(owner, &format!("f{i}")).await;
    }
    let shutdown = tokio_util::sync::CancellationToken::new();
    let mut running = Vec::new();
    for _ in 0..2 {
        running.extend(runtime::spawn_all(
            db.worker.clone(),
            // LISTEN needs a session of its own: never through the pooler.
            crate::common::direct(&db.url),
            vec![projector.clone()],
            Default::default(),
            shutdown.clone(),
        ));
    }
    eventually_some("the notifications are projected", async || {
        (read_ats(&db, owner).await.len() == 6).then_some(())
    })
    .await;
    read_all_up_to(&db, tenant, owner, newest_seq(&db, owner).await).await;
    eventually_some("every share is applied", async || {
        let ats = read_ats(&db, owner).await;
        (ats.iter().all(Option::is_some) && marks(&db).await.is_empty()).then_some(())
    })
    .await;
    assert_unread_is_the_count(&db).await;
    shutdown.cancel();
    for task in running {
        task.await.unwrap();
    }
}
