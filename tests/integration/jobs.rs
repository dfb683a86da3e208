//! The operator's side of processing: the jobs API (dead letters, retry), quotas,
//! image variants, queue depth in /metrics, storage readiness.

use std::time::Duration;

use chronicle::app::Mode;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{
    Client, TestApp, TestDb, WORKER, bytes_of, clamd_addr, eventually, eventually_some, pages_read,
};

async fn jobs(t: &TestApp, c: &Client, query: &str) -> reqwest::Response {
    t.http
        .get(t.url(&format!("/v1/jobs{query}")))
        .bearer_auth(&c.token)
        .send()
        .await
        .unwrap()
}

async fn failures(t: &TestApp, file_id: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_id = $1 AND event_type = 'ProcessingFailed'",
    )
    .bind(file_id)
    .fetch_one(&t.db.owner)
    .await
    .unwrap()
}

async fn wait_for_job(t: &TestApp, c: &Client, query: &str, count: usize) -> Vec<Value> {
    eventually_some(&format!("{count} jobs listed at {query}"), async || {
        let listed: Vec<Value> = jobs(t, c, query).await.json().await.unwrap();
        (listed.len() == count).then_some(listed)
    })
    .await
}

#[tokio::test]
async fn dead_letters_are_listed_for_admins_and_a_retry_grants_fresh_attempts() {
    let t = TestApp::spawn(
        Mode::Serve,
        &[
            WORKER[0],
            ("SCANNER", "clamd"),
            ("CLAMD_ADDR", "127.0.0.1:9"),
            // Backoffs of 200-400 ms, then 1-2 s: a retried version stays queued for
            // at least 1.2 s, the window the "retrying again at once" check needs.
            ("JOB_BACKOFF_BASE_MS", "400"),
        ],
    )
    .await;
    let admin = t.signup("ops").await;
    let accepted = t.upload_ok(&admin, "a.bin", bytes_of(4, 2000)).await;
    let file_id = accepted["file_id"].as_str().unwrap().to_string();
    assert_eq!(t.settled_status(&file_id, 1).await, "failed");

    let dead = wait_for_job(&t, &admin, "?status=dead_letter", 1).await;
    assert_eq!(dead[0]["id"], accepted["version_id"]);
    assert_eq!(dead[0]["attempts"], 3);
    assert_eq!(dead[0]["max_attempts"], 3);
    assert!(
        dead[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("scanner unavailable")
    );
    assert_eq!(
        wait_for_job(&t, &admin, "?status=succeeded", 0).await.len(),
        0
    );

    // Bad input and other roles.
    let r = jobs(&t, &admin, "?status=sleeping").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = jobs(&t, &admin, "?limit=abc").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_request");
    // A page continues from the previous one's last row: `before_id` needs `before`.
    let id = uuid::Uuid::now_v7();
    let r = jobs(&t, &admin, &format!("?before_id={id}")).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_request");
    let r = jobs(
        &t,
        &admin,
        &format!("?before=2100-01-01T00:00:00Z&before_id={id}"),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let page: Vec<Value> = r.json().await.unwrap();
    assert!(!page.is_empty(), "the jobs so far all changed before 2100");
    let user = t.join(&admin.token, "opsuser", "user").await;
    assert_eq!(jobs(&t, &user, "").await.status(), StatusCode::FORBIDDEN);
    let other_tenant = t.signup("otherops").await;
    assert_eq!(wait_for_job(&t, &other_tenant, "", 0).await.len(), 0);
    let retry_url = |id: &str| t.url(&format!("/v1/jobs/{id}/retry"));
    let job_id = dead[0]["id"].as_str().unwrap();
    for (who, id, status) in [
        (&user, job_id, StatusCode::FORBIDDEN),
        (&other_tenant, job_id, StatusCode::NOT_FOUND),
        (&admin, "not-a-uuid", StatusCode::NOT_FOUND),
    ] {
        let r = t
            .http
            .post(retry_url(id))
            .bearer_auth(&who.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status);
    }
    assert_eq!(failures(&t, &file_id).await, 3);

    // The retry: three more attempts (the scanner is still down), then dead again.
    let r = t
        .http
        .post(retry_url(job_id))
        .bearer_auth(&admin.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    // Retrying again at once: the version is queued or processing, not failed (its
    // third failure is at least 1.2 s of backoff away) → refused.
    let r = t
        .http
        .post(retry_url(job_id))
        .bearer_auth(&admin.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    eventually("the retried job ran again", async || {
        failures(&t, &file_id).await >= 6
    })
    .await;
    // The `jobs` projection may still show the first dead letter (attempts 3) when
    // the events already hold the sixth failure: wait for it to catch up.
    eventually(
        "the job dead-lettered again after six attempts",
        async || {
            let dead: Vec<Value> = jobs(&t, &admin, "?status=dead_letter")
                .await
                .json()
                .await
                .unwrap();
            dead.len() == 1 && dead[0]["attempts"] == 6
        },
    )
    .await;
    let retried: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_id = $1 AND event_type = 'ProcessingRetried'",
    )
    .bind(&file_id)
    .fetch_one(&t.db.owner)
    .await
    .unwrap();
    assert_eq!(retried, 1);
    assert!(t.stored_objects("blobs").is_empty());
}

#[tokio::test]
async fn an_upload_past_the_tenant_quota_is_refused_and_stores_nothing() {
    let t = TestApp::spawn(Mode::Serve, &[WORKER[0], ("TENANT_QUOTA_BYTES", "1500")]).await;
    let c = t.signup("quota").await;
    let first = t.upload_ok(&c, "a.bin", bytes_of(1, 1000)).await;
    let first_id = first["file_id"].as_str().unwrap();
    assert_eq!(t.settled_status(first_id, 1).await, "completed");
    let r = t.upload(&c, "b.bin", bytes_of(2, 1000)).await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "quota_exceeded");
    let uploads: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'Uploaded'")
            .fetch_one(&t.db.owner)
            .await
            .unwrap();
    assert_eq!(uploads, 1);
    assert!(t.stored_objects("tmp").is_empty());
    // Another tenant has its own quota.
    let other = t.signup("quota2").await;
    t.upload_ok(&other, "c.bin", bytes_of(3, 1000)).await;
}

async fn usage_of(t: &TestApp, token: &str) -> (StatusCode, Value) {
    let r = t
        .http
        .get(t.url("/v1/tenants/current/usage"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap())
}

/// `GET /v1/tenants/current/usage` shows what the quota check compares: the tenant's
/// stored bytes (each tenant its own) and the quota, to those who upload.
#[tokio::test]
async fn the_usage_shows_the_stored_bytes_and_the_quota_to_those_who_upload() {
    let t = TestApp::spawn(Mode::Serve, &[WORKER[0], ("TENANT_QUOTA_BYTES", "5000")]).await;
    let c = t.signup("usage").await;
    assert_eq!(
        usage_of(&t, &c.token).await,
        (
            StatusCode::OK,
            json!({"stored_bytes": 0, "quota_bytes": 5000})
        )
    );
    let first = t.upload_ok(&c, "a.bin", bytes_of(1, 1000)).await;
    let first_id = first["file_id"].as_str().unwrap();
    assert_eq!(t.settled_status(first_id, 1).await, "completed");
    // The same bytes as a new version of the same file: a duplicate, stored once.
    let v2 = t.upload_version_ok(&c, first_id, bytes_of(1, 1000)).await;
    assert_eq!(t.settled_status(first_id, v2).await, "duplicate");
    let third = t.upload_ok(&c, "c.bin", bytes_of(2, 700)).await;
    assert_eq!(
        t.settled_status(third["file_id"].as_str().unwrap(), 1)
            .await,
        "completed"
    );
    let shown = eventually_some("the usage counts both files", async || {
        let (status, body) = usage_of(&t, &c.token).await;
        (status == StatusCode::OK && body["stored_bytes"] == 1700).then_some(body)
    })
    .await;
    assert_eq!(shown, json!({"stored_bytes": 1700, "quota_bytes": 5000}));
    // Another tenant sees its own.
    let other = t.signup("usage2").await;
    assert_eq!(
        usage_of(&t, &other.token).await.1,
        json!({"stored_bytes": 0, "quota_bytes": 5000})
    );
    // An auditor uploads nothing: refused in the one error shape.
    let auditor = t.join(&c.token, "usage-auditor", "auditor").await;
    let (status, body) = usage_of(&t, &auditor.token).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["code"], "forbidden");
    // Without a token: 401.
    let r = t
        .http
        .get(t.url("/v1/tenants/current/usage"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

/// Without `TENANT_QUOTA_BYTES` the usage names no quota.
#[tokio::test]
async fn without_a_quota_the_usage_names_none() {
    let t = TestApp::spawn(Mode::Web, &[]).await;
    let c = t.signup("noquota").await;
    assert_eq!(
        usage_of(&t, &c.token).await,
        (StatusCode::OK, json!({"stored_bytes": 0}))
    );
}

#[tokio::test]
async fn an_image_gets_a_thumbnail_and_a_metadata_free_copy() {
    let t = TestApp::spawn(Mode::Serve, WORKER).await;
    let c = t.signup("pics").await;
    let png = png_with_text_chunk(64, 32);
    let accepted = t.upload_ok(&c, "photo.png", png.clone()).await;
    let file_id = accepted["file_id"].as_str().unwrap();
    assert_eq!(t.settled_status(file_id, 1).await, "completed");

    let r = t
        .http
        .get(t.url(&format!("/v1/files/{file_id}/thumbnail")))
        .bearer_auth(&c.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "image/png");
    let thumb = image::load_from_memory(&r.bytes().await.unwrap()).unwrap();
    assert!(thumb.width() <= 256 && thumb.height() <= 256);
    assert_eq!(thumb.width(), 2 * thumb.height(), "aspect kept");
    let optimized: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_id = $1 AND event_type = 'Optimized'",
    )
    .bind(file_id)
    .fetch_one(&t.db.owner)
    .await
    .unwrap();
    assert_eq!(optimized, 2, "thumbnail and stripped copy");
    // Downloads serve the metadata-free copy; the owner gets the bytes as uploaded,
    // metadata and all, on request (tests/integration/private_downloads.rs has the rest).
    let r = t
        .http
        .get(t.url(&format!("/v1/files/{file_id}/content")))
        .bearer_auth(&c.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "image/png");
    assert!(!contains(&r.bytes().await.unwrap(), b"GPSLatitude"));
    let r = t
        .http
        .get(t.url(&format!("/v1/files/{file_id}/content?original=true")))
        .bearer_auth(&c.token)
        .send()
        .await
        .unwrap();
    assert_eq!(&r.bytes().await.unwrap()[..], &png[..]);
    let stripped = t
        .stored_objects("variants")
        .into_iter()
        .find(|k| k.ends_with("stripped"))
        .expect("a stripped variant is stored");
    let root = t.app.state.config.data_dir.join("objects/variants");
    let bytes = std::fs::read(root.join(stripped)).unwrap();
    assert!(
        !contains(&bytes, b"GPSLatitude"),
        "metadata survived stripping"
    );
    assert!(contains(&png, b"GPSLatitude"));
    // A file that is not an image has no thumbnail.
    let other = t.upload_ok(&c, "a.bin", bytes_of(1, 100)).await;
    let other_id = other["file_id"].as_str().unwrap();
    assert_eq!(t.settled_status(other_id, 1).await, "completed");
    let r = t
        .http
        .get(t.url(&format!("/v1/files/{other_id}/thumbnail")))
        .bearer_auth(&c.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn queue_depth_is_in_metrics_and_unreachable_storage_fails_readiness() {
    let t = TestApp::spawn(Mode::Web, &[]).await;
    let c = t.signup("depth").await;
    t.upload_ok(&c, "a.bin", bytes_of(1, 100)).await;
    let metrics = t.metrics().await;
    assert!(
        metrics.contains("chronicle_queue_depth{state=\"ready\"}")
            && metrics.contains("chronicle_queue_depth{state=\"delayed\"} 0"),
        "{metrics}"
    );

    let s3 = TestApp::spawn(
        Mode::Web,
        &[
            ("S3_BUCKET", "chronicle"),
            ("S3_ENDPOINT", "http://127.0.0.1:9"),
            ("S3_ALLOW_HTTP", "true"),
            ("S3_ACCESS_KEY_ID", "test"),
            ("S3_SECRET_ACCESS_KEY", "test"),
        ],
    )
    .await;
    let r = s3.http.get(s3.url("/health/ready")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = r.text().await.unwrap();
    assert!(body.contains("storage"), "{body}");
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A real PNG with a tEXt chunk carrying GPS-looking metadata before IEND.
fn png_with_text_chunk(width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(width, height, |x, y| image::Rgb([x as u8, y as u8, 7]));
    let mut png = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let data = b"Comment\0GPSLatitude 48.8584 GPSLongitude 2.2945";
    let mut chunk = (data.len() as u32).to_be_bytes().to_vec();
    chunk.extend_from_slice(b"tEXt");
    chunk.extend_from_slice(data);
    let crc = crc32fast::hash(&chunk[4..]);
    chunk.extend_from_slice(&crc.to_be_bytes());
    let iend = png.len() - 12;
    png.splice(iend..iend, chunk);
    png
}

#[tokio::test]
async fn orphaned_temporary_uploads_are_swept_and_a_dead_letters_bytes_are_kept() {
    let t = TestApp::spawn(
        Mode::Serve,
        &[
            WORKER[0],
            ("SCANNER", "clamd"),
            ("CLAMD_ADDR", "127.0.0.1:9"),
            ("JOB_BACKOFF_BASE_MS", "20"),
            ("TEMP_SWEEP_AFTER_SECS", "2"),
        ],
    )
    .await;
    let c = t.signup("sweep").await;
    let accepted = t.upload_ok(&c, "a.bin", bytes_of(6, 500)).await;
    let file_id = accepted["file_id"].as_str().unwrap();
    assert_eq!(t.settled_status(file_id, 1).await, "failed");
    // An orphan: bytes a crashed upload left behind, with no Uploaded event.
    let orphan = format!("tmp/{}/{}", uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    t.app
        .state
        .storage
        .put(&orphan, b"left behind".to_vec())
        .await
        .unwrap();

    eventually("the orphan swept", async || {
        !t.app.state.storage.exists(&orphan).await.unwrap()
    })
    .await;
    // The dead letter's bytes stay for a retry, however old.
    let temp: String =
        sqlx::query_scalar("SELECT temp_location FROM file_versions WHERE file_id = $1::uuid")
            .bind(file_id)
            .fetch_one(&t.db.owner)
            .await
            .unwrap();
    assert!(t.app.state.storage.exists(&temp).await.unwrap());
    assert_eq!(t.stored_objects("tmp").len(), 1);
}

/// The sweeper decides "orphan" from read tables; while the projectors that would show
/// a reference are behind the log, it must not delete anything (an acknowledged upload
/// would be lost). Holding the `files` and `jobs` checkpoint rows stalls those projectors
/// exactly as a backlog does: the upload's row is missing and no job is dispatched.
#[tokio::test]
async fn the_sweeper_waits_for_lagging_projections_instead_of_deleting_acknowledged_bytes() {
    let Some(clamd) = clamd_addr("the_sweeper_waits_for_lagging_projections…") else {
        return;
    };
    // The job starts as soon as the upload commits (its use case queues it), so the test
    // holds it at the scan: clamd is reached through a gate that lets connections in but
    // forwards nothing until it opens. Meanwhile the bytes wait in temporary storage.
    let gate = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gate_addr = gate.local_addr().unwrap().to_string();
    let t = TestApp::spawn(
        Mode::Serve,
        &[
            WORKER[0],
            ("TEMP_SWEEP_AFTER_SECS", "1"),
            ("SCANNER", "clamd"),
            ("CLAMD_ADDR", &gate_addr),
        ],
    )
    .await;
    let c = t.signup("lag").await;
    let mut stall = t.db.owner.begin().await.unwrap();
    sqlx::query(
        "SELECT name FROM projector_checkpoints WHERE name IN ('files', 'jobs') FOR UPDATE",
    )
    .fetch_all(&mut *stall)
    .await
    .unwrap();
    let bytes = bytes_of(9, 4000);
    let accepted = t.upload_ok(&c, "kept.bin", bytes.clone()).await;
    let file_id = accepted["file_id"].as_str().unwrap().to_string();
    // The bytes are now older than the sweep age, and the sweeper (every 250 ms) has had
    // several rounds with no file_versions row pointing at them.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        t.stored_objects("tmp").len(),
        1,
        "an acknowledged upload's bytes were swept while projections lagged"
    );
    stall.rollback().await.unwrap();
    tokio::spawn(async move {
        loop {
            let (mut inside, _) = gate.accept().await.unwrap();
            let mut clamd = tokio::net::TcpStream::connect(&clamd).await.unwrap();
            tokio::spawn(async move {
                let _ = tokio::io::copy_bidirectional(&mut inside, &mut clamd).await;
            });
        }
    });
    assert_eq!(t.settled_status(&file_id, 1).await, "completed");
    let body = t.content(&c, &file_id).await;
    assert_eq!(body.as_ref(), bytes.as_slice());
}

/// `n` succeeded jobs of `tenant`, the `i`-th (from 1) last changed at `at` (SQL over `i`).
async fn insert_jobs(db: &TestDb, tenant: uuid::Uuid, n: i64, at: &str) {
    sqlx::query(&format!(
        "INSERT INTO jobs (tenant_id, id, file_id, version_number, job_type, payload, status,
                           created_at, updated_at)
         SELECT $1, gen_random_uuid(), gen_random_uuid(), 1, 'process_upload', '{{}}',
                'succeeded', t, t
           FROM generate_series(1, $2) AS i, LATERAL (SELECT {at} AS t) c"
    ))
    .bind(tenant)
    .bind(n)
    .execute(&db.owner)
    .await
    .unwrap();
}

/// The listing's own statement (`JOBS_PAGE_SQL`) with its parameters, any status.
async fn jobs_page(
    tx: &mut sqlx::PgConnection,
    before: Option<chrono::DateTime<chrono::Utc>>,
    before_id: Option<uuid::Uuid>,
    limit: i64,
) -> Vec<chronicle::queries::jobs::JobView> {
    sqlx::query_as(chronicle::queries::jobs::JOBS_PAGE_SQL)
        .bind(None::<String>)
        .bind(before)
        .bind(limit)
        .bind(before_id)
        .fetch_all(tx)
        .await
        .unwrap()
}

/// A page of the jobs listing reads its own rows, not every job of the tenant: 5,000
/// jobs, the first page and a page further on (`before`), as the API's role under
/// row-level security. Without an index in the listing's order each page sorted all the
/// tenant's jobs.
#[tokio::test]
async fn a_page_of_jobs_reads_a_few_pages_however_many_jobs_the_tenant_has() {
    const JOBS: i64 = 5_000;
    let db = TestDb::new().await;
    let tenant = uuid::Uuid::now_v7();
    insert_jobs(&db, tenant, JOBS, "now() - i * interval '1 s'").await;
    // The statistics a running database has (autovacuum may be off where tests run).
    sqlx::query("ANALYZE jobs")
        .execute(&db.owner)
        .await
        .unwrap();
    let sql = chronicle::queries::jobs::JOBS_PAGE_SQL;
    let mut tx = db.as_tenant(tenant).await;
    let before: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT now() - interval '1000.5 s'")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    for (page, before) in [("first", None), ("after 1,000", Some(before))] {
        let bound = match before {
            Some(b) => format!("'{}'::timestamptz", b.to_rfc3339()),
            None => "NULL".into(),
        };
        let explain = format!(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {}",
            sql.replace("$1", "NULL")
                .replace("$2", &bound)
                .replace("$3", "20")
                .replace("$4", "NULL")
        );
        let plan: serde_json::Value = sqlx::query_scalar(&explain)
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        assert_eq!(plan[0]["Plan"]["Actual Rows"], 20, "{page}: {plan:#}");
        let pages = pages_read(&plan);
        assert!(
            pages < 40,
            "{page}: a page of 20 read {pages} pages of a tenant's {JOBS} jobs: {plan:#}"
        );
        // The statement itself, with its parameters: newest first, within the bound.
        let rows = jobs_page(&mut tx, before, None, 20).await;
        assert_eq!(rows.len(), 20, "{page}");
        assert!(
            rows.windows(2).all(|w| w[0].updated_at > w[1].updated_at),
            "{page}"
        );
        assert!(
            before.is_none_or(|b| rows.iter().all(|r| r.updated_at < b)),
            "{page}"
        );
    }
    tx.rollback().await.unwrap();
}

/// Paging through jobs that changed at the same instant (one commit settles several):
/// with `before` and `before_id` from each page's last row, every job comes exactly once,
/// in order; with `before` alone the rest of that instant is skipped, as documented.
#[tokio::test]
async fn paging_through_jobs_of_one_instant_returns_each_exactly_once() {
    let db = TestDb::new().await;
    let tenant = uuid::Uuid::now_v7();
    // 25 jobs: 5 at each of 5 instants, so pages of 3 end inside an instant.
    insert_jobs(
        &db,
        tenant,
        25,
        "timestamptz '2026-12-05 12:00:00+00' + ((i - 1) / 5) * interval '1 s'",
    )
    .await;
    let mut tx = db.as_tenant(tenant).await;
    let all: Vec<(uuid::Uuid, chrono::DateTime<chrono::Utc>)> =
        sqlx::query_as("SELECT id, updated_at FROM jobs ORDER BY updated_at DESC, id DESC")
            .fetch_all(&mut *tx)
            .await
            .unwrap();
    assert_eq!(all.len(), 25);
    let page =
        async |tx: &mut sqlx::PgConnection, after: Option<(uuid::Uuid, _)>, with_id: bool| {
            let before_id = after.filter(|_| with_id).map(|(id, _)| id);
            jobs_page(tx, after.map(|(_, at)| at), before_id, 3)
                .await
                .into_iter()
                .map(|r| (r.id, r.updated_at))
                .collect::<Vec<_>>()
        };
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let rows = page(&mut tx, after, true).await;
        if rows.is_empty() {
            break;
        }
        after = rows.last().copied();
        seen.extend(rows);
    }
    assert_eq!(seen, all, "every job once, newest first");
    // `before` alone: the first page ends at the third job of the newest instant; the
    // next page starts at the next instant.
    let first = page(&mut tx, None, false).await;
    let next = page(&mut tx, first.last().copied(), false).await;
    assert_eq!(next[0], all[5]);
    tx.rollback().await.unwrap();
}
