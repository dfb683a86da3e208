//! `blob_references`: which versions hold which blob, and since when they no longer do
//! (migrations/0011_blob_gc.sql). The blob garbage collector (src/worker/gc.rs) reads
//! it. Every value comes from the event or its `recorded_at`, so a rebuild reproduces it.
//!
//! **An accepted upload is already a reference**, not only a completed version: the
//! worker finalizes with `copy_if_absent`, so bytes of a purged file that an upload is
//! about to reuse must not be collected under it.
//!
//! New references are gathered and inserted in one statement per batch; a release or
//! a retry first writes the references gathered before it, so it sees them.

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
        let mut references = References::default();
        for e in events.iter().filter(|e| e.aggregate_type == "file") {
            let Ok(file_id) = Uuid::parse_str(&e.aggregate_id) else {
                continue; // not an API file (the files projector warns about these)
            };
            let event: FileEvent = serde_json::from_str(&e.payload)
                .map_err(|err| sqlx::Error::Decode(Box::new(err)))?;
            apply_event(conn, &mut references, e, file_id, event).await?;
        }
        references.write(conn).await
    }
}

async fn apply_event(
    conn: &mut PgConnection,
    references: &mut References,
    e: &EventRecord,
    file_id: Uuid,
    event: FileEvent,
) -> Result<(), sqlx::Error> {
    let version = |n: u32| (e.tenant_id, file_id, n as i32);
    match event {
        FileEvent::Uploaded {
            version_number,
            version: v,
        } => {
            references.add(version(version_number), v.sha256);
            Ok(())
        }
        FileEvent::VersionRestored {
            version_number,
            blob,
            ..
        } => {
            references.add(version(version_number), blob.sha256);
            Ok(())
        }
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
            references.write(conn).await?;
            release(conn, e, file_id, Some(version_number)).await
        }
        FileEvent::Purged => {
            references.write(conn).await?;
            release(conn, e, file_id, None).await
        }
        // An operator retry sends a dead letter back to the worker: it may finalize again.
        FileEvent::ProcessingRetried { version_number } => {
            references.write(conn).await?;
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

/// References gathered and not yet inserted: (tenant, file, version) and the blob.
#[derive(Default)]
struct References(Vec<((Uuid, Uuid, i32), String)>);

impl References {
    fn add(&mut self, version: (Uuid, Uuid, i32), sha256: String) {
        self.0.push((version, sha256));
    }

    /// Inserts and forgets them (a version referenced twice keeps its first row).
    async fn write(&mut self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        if self.0.is_empty() {
            return Ok(());
        }
        let refs = std::mem::take(&mut self.0);
        sqlx::query(
            "INSERT INTO blob_references (tenant_id, file_id, version_number, sha256)
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::int[], $4::text[])
             ON CONFLICT DO NOTHING",
        )
        .bind(refs.iter().map(|r| r.0.0).collect::<Vec<_>>())
        .bind(refs.iter().map(|r| r.0.1).collect::<Vec<_>>())
        .bind(refs.iter().map(|r| r.0.2).collect::<Vec<_>>())
        .bind(refs.iter().map(|r| r.1.as_str()).collect::<Vec<_>>())
        .execute(conn)
        .await?;
        Ok(())
    }
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
