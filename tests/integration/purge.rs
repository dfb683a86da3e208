//! Purge, the blob garbage collector and version retention, end to end: uploads through
//! the API, a real worker (its GC loop every second), real Postgres, Redis and files.

use std::time::{Duration, Instant};

use chronicle::app::Mode;
use reqwest::StatusCode;
use serde_json::Value;

use crate::common::TestApp;
use crate::common::eventually;
use crate::common::{Client, bytes_of};
use crate::files_api::World;

/// A worker whose GC runs every second with the given grace (and retention).
async fn app(grace: &str, retention: Option<&str>) -> TestApp {
    let mut vars = vec![
        ("WORKER_CONCURRENCY", "2"),
        ("BLOB_GC_EVERY_SECS", "1"),
        ("BLOB_GC_GRACE_SECS", grace),
    ];
    if let Some(keep) = retention {
        vars.push(("VERSION_RETENTION", keep));
    }
    TestApp::spawn(Mode::Serve, &vars).await
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

/// Whether the tenant's blob of these bytes is on disk.
fn blob_stored(t: &TestApp, file_id_tenant: &str, bytes: &[u8]) -> bool {
    let sha = sha256_hex(bytes);
    t.stored_objects("blobs")
        .iter()
        .any(|k| k.starts_with(file_id_tenant) && k.ends_with(&sha))
}

async fn tenant_of(t: &TestApp, file_id: &str) -> String {
    sqlx::query_scalar("SELECT tenant_id::text FROM files WHERE id = $1::uuid")
        .bind(file_id)
        .fetch_one(&t.db.owner)
        .await
        .unwrap()
}

async fn uploaded_file(t: &TestApp, c: &Client, name: &str, bytes: &[u8]) -> String {
    let accepted = t.upload_ok(c, name, bytes.to_vec()).await;
    let id = accepted["file_id"].as_str().unwrap().to_string();
    assert_eq!(t.settled_status(&id, 1).await, "completed");
    id
}

async fn send(t: &TestApp, c: &Client, method: &str, path: &str) -> (StatusCode, Value) {
    let r = t
        .http
        .request(method.parse().unwrap(), t.url(path))
        .bearer_auth(&c.token)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn purge(t: &TestApp, c: &Client, file_id: &str) -> StatusCode {
    send(t, c, "DELETE", &format!("/v1/files/{file_id}?purge=true"))
        .await
        .0
}

/// Waits until the blob_refs projector has released every reference of the file, then
/// lets at least two GC rounds pass.
async fn released_and_two_rounds(t: &TestApp, file_id: &str) {
    eventually("references released", async || {
        let live: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM blob_references WHERE file_id = $1::uuid AND released_at IS NULL",
        )
        .bind(file_id)
        .fetch_one(&t.db.owner)
        .await
        .unwrap();
        live == 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
}

#[tokio::test]
async fn a_purged_file_is_gone_from_every_read_its_events_stay() {
    let t = app("0", None).await;
    let c = t.signup("purger").await;
    let other = t.signup("stranger").await;
    let bytes = bytes_of(3, 50_000);
    let id = uploaded_file(&t, &c, "gone.bin", &bytes).await;
    let tenant = tenant_of(&t, &id).await;

    // Bad input changes nothing: an unparsable flag, a malformed id, another tenant.
    let (status, body) = send(&t, &c, "DELETE", &format!("/v1/files/{id}?purge=maybe")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "bad_request");
    assert_eq!(purge(&t, &c, "not-a-uuid").await, StatusCode::NOT_FOUND);
    assert_eq!(purge(&t, &other, &id).await, StatusCode::NOT_FOUND);
    assert_eq!(
        send(&t, &c, "GET", &format!("/v1/files/{id}")).await.0,
        StatusCode::OK
    );

    // A trashed file can be purged ("empty the trash"); twice is fine.
    assert_eq!(
        send(&t, &c, "DELETE", &format!("/v1/files/{id}")).await.0,
        StatusCode::OK
    );
    assert_eq!(purge(&t, &c, &id).await, StatusCode::NO_CONTENT);
    assert_eq!(purge(&t, &c, &id).await, StatusCode::NO_CONTENT);

    for path in [
        format!("/v1/files/{id}"),
        format!("/v1/files/{id}/versions"),
        format!("/v1/files/{id}/content"),
        format!("/v1/files/{id}/versions/1/content"),
    ] {
        eventually(&format!("{path} → 404"), async || {
            send(&t, &c, "GET", &path).await.0 == StatusCode::NOT_FOUND
        })
        .await;
    }
    for query in ["", "?deleted=true"] {
        let (_, list) = send(&t, &c, "GET", &format!("/v1/files{query}")).await;
        assert!(
            !list.to_string().contains(&id),
            "listed after purge: {list}"
        );
    }
    // Every command on it is refused like a missing file.
    for (method, path) in [
        ("POST", format!("/v1/files/{id}/restore")),
        ("PUT", format!("/v1/files/{id}/tags/x")),
    ] {
        assert_eq!(send(&t, &c, method, &path).await.0, StatusCode::NOT_FOUND);
    }

    // The log keeps the whole history, with exactly one Purged.
    let types: Vec<String> = sqlx::query_scalar(
        "SELECT event_type FROM events WHERE aggregate_id = $1 ORDER BY sequence",
    )
    .bind(&id)
    .fetch_all(&t.db.owner)
    .await
    .unwrap();
    assert_eq!(types.first().map(String::as_str), Some("FileCreated"));
    assert!(types.iter().any(|e| e == "VersionCompleted"), "{types:?}");
    assert_eq!(
        types.iter().filter(|e| *e == "Purged").count(),
        1,
        "{types:?}"
    );

    // With a grace of 0 the bytes go at the next GC round.
    eventually("blob collected", async || !blob_stored(&t, &tenant, &bytes)).await;
}

#[tokio::test]
async fn a_shared_blob_goes_only_after_every_file_using_it_is_purged() {
    let t = app("0", None).await;
    let a = t.signup("sharer").await;
    let b = t.signup("neighbour").await;
    let bytes = bytes_of(9, 80_000);
    let first = uploaded_file(&t, &a, "one.bin", &bytes).await;
    let second = uploaded_file(&t, &a, "two.bin", &bytes).await;
    // Another tenant's identical bytes: its own blob, never shared (dedup is per tenant).
    let theirs = uploaded_file(&t, &b, "same.bin", &bytes).await;
    let (tenant_a, tenant_b) = (tenant_of(&t, &first).await, tenant_of(&t, &theirs).await);
    assert!(blob_stored(&t, &tenant_a, &bytes) && blob_stored(&t, &tenant_b, &bytes));
    assert_eq!(
        t.stored_objects(&format!("blobs/{tenant_a}")).len(),
        1,
        "one blob for both files of the tenant"
    );

    assert_eq!(purge(&t, &a, &first).await, StatusCode::NO_CONTENT);
    released_and_two_rounds(&t, &first).await;
    assert!(
        blob_stored(&t, &tenant_a, &bytes),
        "still used by the second file"
    );
    let r = t
        .http
        .get(t.url(&format!("/v1/files/{second}/content")))
        .bearer_auth(&a.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(&r.bytes().await.unwrap()[..], &bytes[..]);

    assert_eq!(purge(&t, &a, &second).await, StatusCode::NO_CONTENT);
    eventually("shared blob collected", async || {
        !blob_stored(&t, &tenant_a, &bytes)
    })
    .await;
    // Tenant B's identical bytes are untouched and still download.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(blob_stored(&t, &tenant_b, &bytes));
    let r = t
        .http
        .get(t.url(&format!("/v1/files/{theirs}/content")))
        .bearer_auth(&b.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(&r.bytes().await.unwrap()[..], &bytes[..]);
}

#[tokio::test]
async fn bytes_stay_for_the_grace_period_and_go_after_it() {
    // A grace long enough that the purge, the release of its references and two GC
    // rounds fit inside it on a loaded machine (4 s did not, at load average 13).
    let t = app("10", None).await;
    let c = t.signup("patient").await;
    let bytes = bytes_of(5, 20_000);
    let id = uploaded_file(&t, &c, "wait.bin", &bytes).await;
    let tenant = tenant_of(&t, &id).await;
    let purged_at = Instant::now();
    assert_eq!(purge(&t, &c, &id).await, StatusCode::NO_CONTENT);
    released_and_two_rounds(&t, &id).await;
    assert!(
        purged_at.elapsed() < Duration::from_secs(10),
        "test too slow to judge"
    );
    assert!(
        blob_stored(&t, &tenant, &bytes),
        "collected within the grace"
    );
    eventually("collected after the grace", async || {
        !blob_stored(&t, &tenant, &bytes)
    })
    .await;
    assert!(purged_at.elapsed() >= Duration::from_secs(10));
}

async fn upload_version(t: &TestApp, c: &Client, file_id: &str, bytes: Vec<u8>) -> i32 {
    let n = t.upload_version_ok(c, file_id, bytes).await;
    assert_eq!(t.settled_status(file_id, n).await, "completed");
    n
}

#[tokio::test]
async fn retention_prunes_the_oldest_versions_and_gc_removes_their_bytes() {
    let t = app("0", Some("2")).await;
    let c = t.signup("keeper").await;
    let (v1, v2, v3) = (
        bytes_of(1, 10_000),
        bytes_of(2, 10_000),
        bytes_of(4, 10_000),
    );
    let id = uploaded_file(&t, &c, "doc.bin", &v1).await;
    let tenant = tenant_of(&t, &id).await;
    // A second file repeats v2's bytes: pruning v2 later must not take them away.
    let other = uploaded_file(&t, &c, "copy.bin", &v2).await;
    assert_eq!(upload_version(&t, &c, &id, v2.clone()).await, 2);
    assert_eq!(upload_version(&t, &c, &id, v3.clone()).await, 3);

    eventually("version 1 pruned from the history", async || {
        let (_, versions) = send(&t, &c, "GET", &format!("/v1/files/{id}/versions")).await;
        let numbers: Vec<i64> = versions
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["version_number"].as_i64().unwrap())
            .collect();
        numbers == [2, 3]
    })
    .await;
    let (status, _) = send(&t, &c, "GET", &format!("/v1/files/{id}/versions/1/content")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = send(
        &t,
        &c,
        "POST",
        &format!("/v1/files/{id}/versions/1/restore"),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, file) = send(&t, &c, "GET", &format!("/v1/files/{id}")).await;
    assert_eq!(file["current_version"]["version_number"], 3);
    eventually("v1's bytes collected", async || {
        !blob_stored(&t, &tenant, &v1)
    })
    .await;
    assert!(blob_stored(&t, &tenant, &v2) && blob_stored(&t, &tenant, &v3));

    // Idempotent: more rounds prune nothing else; the event is recorded once.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let pruned: Vec<String> = sqlx::query_scalar(
        "SELECT payload::text FROM events WHERE aggregate_id = $1 AND event_type = 'VersionPruned'",
    )
    .bind(&id)
    .fetch_all(&t.db.owner)
    .await
    .unwrap();
    assert_eq!(pruned.len(), 1, "{pruned:?}");
    assert!(pruned[0].contains("\"version_number\":1"), "{pruned:?}");
    let (_, versions) = send(&t, &c, "GET", &format!("/v1/files/{other}/versions")).await;
    assert_eq!(versions.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn owners_and_admins_purge_auditors_may_not_and_others_see_nothing() {
    let w = World::new(&[("WORKER_CONCURRENCY", "0")]).await;
    let alice = w.join("alice", "user").await;
    let bob = w.join("bob", "user").await;
    let audrey = w.join("audrey", "auditor").await;
    let mine = w.create(&alice, "alice's").await;
    let hers = w.create(&alice, "alice's other").await;
    let purge = async |who, file: uuid::Uuid| {
        w.send("DELETE", &format!("/v1/files/{file}?purge=true"), who)
            .await
    };

    // Another user cannot see it: 404 (nothing leaks); an auditor sees it: 403.
    assert_eq!(purge(&bob, mine).await.0, StatusCode::NOT_FOUND);
    let (status, body) = purge(&audrey, mine).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::FORBIDDEN, &"forbidden".into())
    );
    assert_eq!(
        purge(&alice, uuid::Uuid::now_v7()).await.0,
        StatusCode::NOT_FOUND
    );
    let purged: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'Purged'")
        .fetch_one(&w.t.db.owner)
        .await
        .unwrap();
    assert_eq!(purged, 0, "refused purges changed nothing");

    // The owner and an admin may; afterwards the auditor sees nothing either.
    assert_eq!(purge(&alice, mine).await.0, StatusCode::NO_CONTENT);
    assert_eq!(purge(&w.admin, hers).await.0, StatusCode::NO_CONTENT);
    assert_eq!(purge(&bob, mine).await.0, StatusCode::NOT_FOUND);
    eventually("gone for the auditor too", async || {
        w.send("GET", &format!("/v1/files/{mine}"), &audrey).await.0 == StatusCode::NOT_FOUND
    })
    .await;
}
