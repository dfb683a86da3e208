//! `blob_references`: which versions hold which blob, and since when they no longer do
//! (migrations/0011_blob_gc.sql). The blob garbage collector (src/worker/gc.rs) reads
//! it. Every value comes from the event or its `recorded_at`, so a rebuild reproduces it.
//!
//! **An accepted upload is already a reference**, not only a completed version: the
//! worker finalizes with `copy_if_absent`, so bytes of a purged file that an upload is
//! about to reuse must not be collected under it.

use async_trait::async_trait;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{EventRecord, Projector};
use crate::aggregates::FileEvent;
use crate::aggregates::file::Original;

pub struct BlobRefsProjector;

#[async_trait]
impl Projector for BlobRefsProjector {
    fn name(&self) -> &'static str {
        "blob_refs"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["blob_references"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[EventRecord],
    ) -> Result<(), sqlx::Error> {
        for e in events.iter().filter(|e| e.aggregate_type == "file") {
            let Ok(file_id) = Uuid::parse_str(&e.aggregate_id) else {
                continue; // not an API file (the files projector warns about these)
            };
            let event: FileEvent = serde_json::from_str(&e.payload)
                .map_err(|err| sqlx::Error::Decode(Box::new(err)))?;
            apply_event(conn, e, file_id, event).await?;
        }
        Ok(())
    }
}

async fn apply_event(
    conn: &mut PgConnection,
    e: &EventRecord,
    file_id: Uuid,
    event: FileEvent,
) -> Result<(), sqlx::Error> {
    match event {
        FileEvent::Uploaded {
            version_number,
            version,
        } => reference(conn, e, file_id, version_number, &version.sha256).await,
        FileEvent::VersionRestored {
            version_number,
            blob,
            ..
        } => reference(conn, e, file_id, version_number, &blob.sha256).await,
        // Settled without bytes of its own in `blobs/`.
        FileEvent::VirusFailed { version_number, .. }
        | FileEvent::DuplicateDetected {
            version_number,
            original: Original::ThisFile { .. },
        }
        | FileEvent::ProcessingFailed {
            version_number,
            last_attempt: true,
            ..
        }
        | FileEvent::VersionPruned { version_number } => {
            release(conn, e, file_id, Some(version_number)).await
        }
        FileEvent::Purged => release(conn, e, file_id, None).await,
        // An operator retry sends a dead letter back to the worker: it may finalize again.
        FileEvent::ProcessingRetried { version_number } => {
            sqlx::query(
                "UPDATE blob_references SET released_at = NULL
                  WHERE tenant_id = $1 AND file_id = $2 AND version_number = $3",
            )
            .bind(e.tenant_id)
            .bind(file_id)
            .bind(version_number as i32)
            .execute(conn)
            .await?;
            Ok(())
        }
        _ => Ok(()),
    }
}

async fn reference(
    conn: &mut PgConnection,
    e: &EventRecord,
    file_id: Uuid,
    version_number: u32,
    sha256: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO blob_references (tenant_id, file_id, version_number, sha256)
         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
    )
    .bind(e.tenant_id)
    .bind(file_id)
    .bind(version_number as i32)
    .bind(sha256)
    .execute(conn)
    .await?;
    Ok(())
}

/// Releases one version's reference, or (`None`) all of the file's. The first release
/// counts: the grace period runs from when the reference went away.
async fn release(
    conn: &mut PgConnection,
    e: &EventRecord,
    file_id: Uuid,
    version_number: Option<u32>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE blob_references SET released_at = $4
          WHERE tenant_id = $1 AND file_id = $2 AND released_at IS NULL
            AND ($3::int IS NULL OR version_number = $3)",
    )
    .bind(e.tenant_id)
    .bind(file_id)
    .bind(version_number.map(|n| n as i32))
    .bind(e.recorded_at)
    .execute(conn)
    .await?;
    Ok(())
}
