//! The analytics views return the numbers worked out by hand from the known dataset
//! (tests/integration/analyst_fixture.rs `seed` describes it), as each analyst role
//! sees them; `file_versions.processed_at` is the verdict event's time and survives a
//! rebuild.

use chronicle::projections::{self, rebuild::rebuild};
use sqlx::PgConnection;
use uuid::Uuid;

use chronicle::aggregates::FileEvent;

use crate::analyst_fixture::{Login, append_to_file, seed};
use crate::common::{TestApp, TestDb, table_contents};
use crate::common::{WORKER, bytes_of, eventually};
use crate::scan::EICAR;

async fn rows<T>(conn: &mut PgConnection, sql: &str) -> Vec<T>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
{
    sqlx::query_as(sql).fetch_all(conn).await.unwrap()
}

#[tokio::test]
async fn storage_and_dedup_views_count_stored_bytes_per_user_and_tenant() {
    let db = TestDb::new().await;
    let d = seed(&db).await;
    let all = Login::create(&db, "analyst_all").await;
    let mut conn = all.connect(&db).await;

    // A: a1 v1 + v2 (restored) `aa` 1000 each, a3 `bb` 500 + `cc` 300 (deleted, still
    // stored) for user a1; a2 `aa` 1000 for user a2. a4 (virus), a5 (dead letter) hold
    // no bytes; a6 is purged.
    let by_user: Vec<(Uuid, Uuid, i64, i64, i64, i64)> = rows(
        &mut conn,
        "SELECT tenant_id, user_id, files, versions, logical_bytes, deleted_bytes
           FROM analytics.storage_by_user ORDER BY logical_bytes DESC",
    )
    .await;
    assert_eq!(
        by_user,
        vec![
            (d.tenant_a, d.user_a1, 2, 4, 2800, 800),
            (d.tenant_a, d.user_a2, 1, 1, 1000, 0),
            (d.tenant_b, d.user_b, 1, 1, 1000, 0),
        ]
    );

    // A's blobs: aa (3 versions), bb, cc → 1800 physical of 3800 logical. B's `aa` is
    // its own blob: dedup never crosses tenants.
    let dedup: Vec<(Uuid, i64, i64, i64, i64, i64, String)> = rows(
        &mut conn,
        "SELECT tenant_id, versions, blobs, logical_bytes, physical_bytes, saved_bytes, saved_ratio::text
           FROM analytics.dedup_savings ORDER BY logical_bytes DESC",
    )
    .await;
    assert_eq!(
        dedup,
        vec![
            (d.tenant_a, 5, 3, 3800, 1800, 2000, "0.5263".into()),
            (d.tenant_b, 1, 1, 1000, 1000, 0, "0.0000".into()),
        ]
    );

    let by_tenant: Vec<(Uuid, String, i64, i64, i64, i64, i64)> = rows(
        &mut conn,
        "SELECT tenant_id, tenant_name, files, versions, logical_bytes, physical_bytes, deleted_bytes
           FROM analytics.storage_by_tenant ORDER BY tenant_name",
    )
    .await;
    assert_eq!(
        by_tenant,
        vec![
            (d.tenant_a, "A".into(), 3, 5, 3800, 1800, 800),
            (d.tenant_b, "B".into(), 1, 1, 1000, 1000, 0),
        ]
    );

    // The same views through a login pinned to B show B's row only.
    let pinned = Login::create(&db, "analyst").await;
    pinned.pin(&db, d.tenant_b).await;
    let mut conn = pinned.connect(&db).await;
    let by_tenant: Vec<(Uuid, i64, i64)> = rows(
        &mut conn,
        "SELECT tenant_id, logical_bytes, physical_bytes FROM analytics.storage_by_tenant",
    )
    .await;
    assert_eq!(by_tenant, vec![(d.tenant_b, 1000, 1000)]);
}

#[tokio::test]
async fn daily_views_count_uploads_viruses_latency_and_dead_letters_by_utc_day() {
    let db = TestDb::new().await;
    let d = seed(&db).await;
    let all = Login::create(&db, "analyst_all").await;
    let mut conn = all.connect(&db).await;
    let (d1, d2) = ("2026-03-01".to_string(), "2026-03-02".to_string());

    // Uploads: A on D1 a1, a2 (23:59:58), a6; on D2 a3 ×2, a4, a5 (a restore is not an
    // upload). One virus on D2. B: one upload on D1.
    let uploads: Vec<(Uuid, String, i64, i64)> = rows(
        &mut conn,
        "SELECT tenant_id, day::text, uploads, virus_detections FROM analytics.uploads_daily
          ORDER BY tenant_id = (SELECT tenant_id FROM tenants WHERE name = 'B'), day",
    )
    .await;
    assert_eq!(
        uploads,
        vec![
            (d.tenant_a, d1.clone(), 3, 0),
            (d.tenant_a, d2.clone(), 4, 1),
            (d.tenant_b, d1.clone(), 1, 0),
        ]
    );

    // Latency by the day a version completed: A D1 {2 s (a1), 3 s (a6, since purged)};
    // D2 {4 s (a2, uploaded on D1), 6 s, 10 s}; the restored a1 v2 is not processed.
    // percentile_cont interpolates: D1 p90 = 2 + 0.9·1; D2 p90 = 6 + 0.8·4, p99 = 6 + 0.98·4.
    let latency: Vec<(Uuid, String, i64, f64, f64, f64, f64)> = rows(
        &mut conn,
        "SELECT tenant_id, day::text, versions, p50_seconds, p90_seconds, p99_seconds, max_seconds
           FROM analytics.processing_latency_daily
          ORDER BY tenant_id = (SELECT tenant_id FROM tenants WHERE name = 'B'), day",
    )
    .await;
    let expected = [
        (d.tenant_a, d1.clone(), 2, 2.5, 2.9, 2.99, 3.0),
        (d.tenant_a, d2.clone(), 3, 6.0, 9.2, 9.92, 10.0),
        (d.tenant_b, d1.clone(), 1, 1.0, 1.0, 1.0, 1.0),
    ];
    assert_eq!(latency.len(), expected.len(), "{latency:?}");
    for (got, want) in latency.iter().zip(expected) {
        assert_eq!((got.0, &got.1, got.2), (want.0, &want.1, want.2));
        for (g, w) in [
            (got.3, want.3),
            (got.4, want.4),
            (got.5, want.5),
            (got.6, want.6),
        ] {
            assert!((g - w).abs() < 1e-9, "{got:?} vs {want:?}");
        }
    }

    let dead: Vec<(Uuid, String, i64)> = rows(
        &mut conn,
        "SELECT tenant_id, day::text, dead_letters FROM analytics.dead_letters_daily",
    )
    .await;
    assert_eq!(dead, vec![(d.tenant_a, d2.clone(), 1)]);

    // A pinned login sees only its tenant's days.
    let pinned = Login::create(&db, "analyst").await;
    pinned.pin(&db, d.tenant_b).await;
    let mut conn = pinned.connect(&db).await;
    let days: Vec<(Uuid, String)> = rows(
        &mut conn,
        "SELECT tenant_id, day::text FROM analytics.uploads_daily
         UNION ALL SELECT tenant_id, day::text FROM analytics.processing_latency_daily
         UNION ALL SELECT tenant_id, day::text FROM analytics.dead_letters_daily",
    )
    .await;
    assert_eq!(days, vec![(d.tenant_b, d1.clone()), (d.tenant_b, d1)]);
}

#[tokio::test]
async fn processed_at_is_the_verdict_events_time_and_a_rebuild_reproduces_it() {
    let db = TestDb::new().await;
    let d = seed(&db).await;
    // (file name, version) → processed_at, as the files projector wrote it.
    let processed: Vec<(String, i32, String, Option<String>)> = sqlx::query_as(
        "SELECT f.display_name, v.version_number, v.status::text,
                to_char(v.processed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')
           FROM file_versions v JOIN files f ON f.tenant_id = v.tenant_id AND f.id = v.file_id
          WHERE v.tenant_id = $1 ORDER BY 1, 2",
    )
    .bind(d.tenant_a)
    .fetch_all(&db.worker)
    .await
    .unwrap();
    let at = |s: &str| Some(format!("2026-03-0{s}"));
    assert_eq!(
        processed,
        vec![
            ("a1".into(), 1, "completed".into(), at("1 10:00:02")),
            ("a1".into(), 2, "completed".into(), None), // restored: never processed
            ("a2".into(), 1, "completed".into(), at("2 00:00:02")), // not the duplicate check
            ("a3".into(), 1, "completed".into(), at("2 09:00:06")),
            ("a3".into(), 2, "completed".into(), at("2 10:00:10")),
            ("a4".into(), 1, "virus_failed".into(), at("2 12:00:01")),
            ("a5".into(), 1, "failed".into(), at("2 13:05:00")),
            ("a6".into(), 1, "completed".into(), at("1 11:00:03")),
        ]
    );

    let before = table_contents(&db.worker, "file_versions").await;
    let files = projections::by_name("files").unwrap();
    rebuild(&db.worker, files).await.unwrap();
    assert_eq!(table_contents(&db.worker, "file_versions").await, before);
}

#[tokio::test]
async fn a_retried_dead_letter_leaves_the_views_until_it_settles_again() {
    let db = TestDb::new().await;
    let d = seed(&db).await;
    let all = Login::create(&db, "analyst_all").await;
    let mut conn = all.connect(&db).await;
    let retried = FileEvent::ProcessingRetried { version_number: 1 };
    append_to_file(&db, d.tenant_a, "a5", "2026-03-03T08:00:00Z", retried).await;

    let dead: Vec<(Uuid, String, i64)> = rows(
        &mut conn,
        "SELECT tenant_id, day::text, dead_letters FROM analytics.dead_letters_daily",
    )
    .await;
    assert_eq!(dead, vec![]);
    let pending: Option<String> = sqlx::query_scalar(
        "SELECT v.processed_at::text FROM file_versions v JOIN files f ON f.tenant_id = v.tenant_id AND f.id = v.file_id
          WHERE f.display_name = 'a5'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(pending, None, "queued again: no verdict yet");

    // It completes on D3 after 19 h from its upload on D2 13:00: a new latency day.
    let done = FileEvent::VersionCompleted {
        version_number: 1,
        result: chronicle::aggregates::file::FinalBlob {
            storage_key: "blobs/ee".into(),
            size_bytes: 700,
            sha256: "ee".into(),
            detected_mime: "application/octet-stream".into(),
        },
    };
    append_to_file(&db, d.tenant_a, "a5", "2026-03-03T08:00:00Z", done).await;
    let d3: Vec<(i64, f64)> = rows(
        &mut conn,
        "SELECT versions, p50_seconds FROM analytics.processing_latency_daily WHERE day = '2026-03-03'",
    )
    .await;
    assert_eq!(d3, vec![(1, 19.0 * 3600.0)]);
    let stored: Vec<(i64, i64)> = rows(
        &mut conn,
        "SELECT versions, logical_bytes FROM analytics.storage_by_user WHERE user_id = (SELECT owner_id FROM files WHERE display_name = 'a5')",
    )
    .await;
    assert_eq!(stored, vec![(2, 1700)]);
}

/// The same views over rows the real API, worker and live projectors wrote: two files
/// with the same bytes and one virus.
#[tokio::test]
async fn the_views_count_what_the_real_pipeline_did() {
    let t = TestApp::spawn(chronicle::app::Mode::Serve, WORKER).await;
    let c = t.signup("analytics").await;
    let bytes = bytes_of(7, 30_000);
    let mut files = Vec::new();
    for (name, body) in [
        ("x.bin", bytes.clone()),
        ("y.bin", bytes),
        ("e.com", EICAR.to_vec()),
    ] {
        let accepted = t.upload_ok(&c, name, body).await;
        files.push(accepted["file_id"].as_str().unwrap().to_string());
    }
    assert_eq!(t.settled_status(&files[0], 1).await, "completed");
    assert_eq!(t.settled_status(&files[1], 1).await, "completed");
    assert_eq!(t.settled_status(&files[2], 1).await, "virus_failed");

    let all = Login::create(&t.db, "analyst_all").await;
    let mut conn = all.connect(&t.db).await;
    // The audit log's projector runs on its own: wait until it has caught up.
    eventually(
        "uploads_daily counts three uploads and one detection",
        async || {
            let uploads: Vec<(i64, i64)> = rows(
            &mut conn,
            // Summed over days: a run at midnight UTC may span two.
            "SELECT sum(uploads)::bigint, sum(virus_detections)::bigint FROM analytics.uploads_daily
              HAVING count(*) > 0",
        )
        .await;
            uploads == vec![(3, 1)]
        },
    )
    .await;
    let dedup: Vec<(i64, i64, i64, i64)> = rows(
        &mut conn,
        "SELECT versions, blobs, logical_bytes, physical_bytes FROM analytics.dedup_savings",
    )
    .await;
    assert_eq!(dedup, vec![(2, 1, 60_000, 30_000)]);
    let latency: Vec<(i64, bool)> = rows(
        &mut conn,
        "SELECT sum(versions)::bigint, bool_and(p99_seconds BETWEEN 0 AND 60)
           FROM analytics.processing_latency_daily",
    )
    .await;
    assert_eq!(latency, vec![(2, true)]);
}
