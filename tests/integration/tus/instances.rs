//! Two API instances on one upload. This process remembers the upload as it last wrote
//! it and decides a PATCH's checks on that memory (no load); another instance has since
//! taken a chunk. Under the lock the remembered state is confirmed against the database
//! before the temp file is cut to its offset (src/api/uploads/tus/accept.rs), so the
//! other instance's recorded bytes are never truncated away.

use std::time::Duration;

use chronicle::aggregates::upload::{Upload, UploadCommand};
use chronicle::commands;
use chronicle::ids::TenantId;
use chronicle::store::{Actor, ChronicleStore, EventLog, EventMetadata};
use reqwest::StatusCode;
use sha2::Digest;

use super::{code, create, header, patch, temp_file, upload_id};
use crate::common::eventually_within;
use crate::files_api::World;

#[tokio::test]
async fn a_chunk_another_instance_recorded_is_never_truncated_away() {
    let w = World::new(&[]).await;
    let at = create(&w, &w.admin, 9, "").await;
    assert_eq!(patch(&w, &w.admin, &at, 0, b"abc").await.status(), 204);

    // Another instance takes "DEF" at 3: bytes durable first, then its record, through
    // an event log of its own (its own memory of the stream).
    let path = temp_file(&w, &at);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(&mut f, b"DEF").unwrap();
    f.sync_data().unwrap();
    drop(f);
    let tenant = TenantId(w.tenant);
    let other = ChronicleStore::<Upload>::new(EventLog::new(w.t.db.app.clone()), tenant, 100);
    let now = chrono::Utc::now();
    let chunk = UploadCommand::AcceptChunk {
        from_offset: 3,
        bytes: 3,
        declared_length: None,
        now,
        expires_at: now + chrono::Duration::hours(1),
        parts: None,
        sha256_state: None,
    };
    let meta = EventMetadata::system(tenant, Actor::System("test"));
    commands::execute(&other, &upload_id(&at).to_string(), chunk, &meta, &())
        .await
        .unwrap();

    // A client that never saw that answer sends other bytes for offset 3 to this
    // instance, whose memory still says the upload ends at 3.
    let r = patch(&w, &w.admin, &at, 3, b"xyz").await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(code(r).await, "offset_mismatch");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        b"abcDEF",
        "recorded bytes kept"
    );

    let r = patch(&w, &w.admin, &at, 6, b"ghi").await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let file_id: uuid::Uuid = header(&r, "chronicle-file-id").parse().unwrap();
    let sha: String = eventually_within(
        "the upload's SHA-256 projected",
        Duration::from_secs(10),
        async || {
            sqlx::query_scalar("SELECT sha256 FROM file_versions WHERE file_id = $1")
                .bind(file_id)
                .fetch_optional(&w.t.db.owner)
                .await
                .unwrap()
        },
    )
    .await;
    assert_eq!(sha, hex::encode(sha2::Sha256::digest(b"abcDEFghi")));
}
