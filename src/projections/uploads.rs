//! `uploads`: one row per resumable (tus) upload (migrations/0012_uploads.sql). The
//! expiry job and the temp sweeper read it; offsets are decided on the aggregate, never
//! here. Every value comes from the event or its `recorded_at`, so a rebuild reproduces it.

use async_trait::async_trait;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{EventRecord, Projector};
use crate::aggregates::UploadEvent;

pub struct UploadsProjector;

#[async_trait]
impl Projector for UploadsProjector {
    fn name(&self) -> &'static str {
        "uploads"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["uploads"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[EventRecord],
    ) -> Result<(), sqlx::Error> {
        for e in events.iter().filter(|e| e.aggregate_type == "upload") {
            let Ok(id) = Uuid::parse_str(&e.aggregate_id) else {
                continue;
            };
            let event: UploadEvent = serde_json::from_str(&e.payload)
                .map_err(|err| sqlx::Error::Decode(Box::new(err)))?;
            apply_event(conn, e, id, event).await?;
        }
        Ok(())
    }
}

async fn apply_event(
    conn: &mut PgConnection,
    e: &EventRecord,
    id: Uuid,
    event: UploadEvent,
) -> Result<(), sqlx::Error> {
    let (sql, extra): (&str, Option<i64>) = match event {
        UploadEvent::UploadStarted {
            owner_id,
            length,
            target,
            temp_key,
            expires_at,
            ..
        } => {
            sqlx::query(
                "INSERT INTO uploads (tenant_id, id, owner_id, file_id, temp_key, length, state,
                                      expires_at, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, 'in_progress', $7, $8, $8)
                 ON CONFLICT DO NOTHING",
            )
            .bind(e.tenant_id)
            .bind(id)
            .bind(owner_id.0)
            .bind(target.file_id.0)
            .bind(temp_key)
            .bind(length.map(|l| l as i64))
            .bind(expires_at)
            .bind(e.recorded_at)
            .execute(conn)
            .await?;
            return Ok(());
        }
        UploadEvent::ChunkAccepted {
            offset,
            declared_length,
            expires_at,
            ..
        } => {
            sqlx::query(
                "UPDATE uploads SET \"offset\" = $3, length = coalesce($4, length),
                        expires_at = $5, updated_at = $6
                  WHERE tenant_id = $1 AND id = $2",
            )
            .bind(e.tenant_id)
            .bind(id)
            .bind(offset as i64)
            .bind(declared_length.map(|l| l as i64))
            .bind(expires_at)
            .bind(e.recorded_at)
            .execute(conn)
            .await?;
            return Ok(());
        }
        UploadEvent::UploadCompleted { version_number, .. } => (
            "UPDATE uploads SET state = 'completed', version_number = $4, updated_at = $3
              WHERE tenant_id = $1 AND id = $2",
            Some(version_number as i64),
        ),
        UploadEvent::UploadExpired => (
            "UPDATE uploads SET state = 'expired', updated_at = $3
              WHERE tenant_id = $1 AND id = $2",
            None,
        ),
        // Where S3 keeps the bytes is no reader's business.
        UploadEvent::MultipartOpened { .. }
        | UploadEvent::PartsStored(_)
        | UploadEvent::Sha256Carried { .. } => return Ok(()),
        UploadEvent::DirectOpened(_) => return Ok(()),
        UploadEvent::UploadTerminated => (
            "UPDATE uploads SET state = 'terminated', updated_at = $3
              WHERE tenant_id = $1 AND id = $2",
            None,
        ),
    };
    let mut query = sqlx::query(sql)
        .bind(e.tenant_id)
        .bind(id)
        .bind(e.recorded_at);
    if let Some(n) = extra {
        query = query.bind(n as i32);
    }
    query.execute(conn).await?;
    Ok(())
}
