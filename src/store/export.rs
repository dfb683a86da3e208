//! NDJSON export of a tenant's events for `chronicle audit export` and
//! `GET /v1/audit/export`, self-verifying: a header saying what range it holds and
//! whether that is the tenant's whole log, the tenant's checkpoint chain and the heads
//! of the checkpoint covering the range, then the events in global (append) order, then
//! an end line. With the public keys alone an auditor checks it offline
//! (docs/audit.md "Export", scripts/verify_export.py).
//!
//! Everything is read in one REPEATABLE READ snapshot, and streamed in constant memory:
//! rows go out in ~64 KiB chunks through a bounded channel, so a slow reader slows the
//! query instead of filling RAM.

use std::fmt::Write as _;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{Stream, TryStreamExt};
use serde_json::json;
use sqlx::{PgConnection, PgPool, Row};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::checkpoint::{CHECKPOINT_COLUMNS, StoredCheckpoint, timestamp_text};
use crate::ids::TenantId;

/// Flush a chunk once it holds this many bytes.
const CHUNK_BYTES: usize = 64 * 1024;
/// Chunks in flight between the query and the reader.
const CHUNKS_IN_FLIGHT: usize = 4;
/// The export format (the header's `format`).
pub const EXPORT_FORMAT: u32 = 2;

/// Which events to export: one tenant, `since <= recorded_at < until`.
#[derive(Debug, Clone, Copy)]
pub struct ExportFilter {
    pub tenant: TenantId,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

impl ExportFilter {
    /// The whole log: no time bound cuts any stream.
    pub fn is_complete(&self) -> bool {
        self.since.is_none() && self.until.is_none()
    }
}

/// The export as a stream of NDJSON chunks (each ends with a newline). An error ends
/// the stream without the end line, so a reader can tell a cut export from a whole one.
pub fn ndjson(
    pool: PgPool,
    filter: ExportFilter,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
    tokio::spawn(async move {
        if let Err(err) = produce(&pool, filter, &tx).await {
            tracing::error!(error = %err, "export failed");
            let _ = tx.send(Err(std::io::Error::other("export failed"))).await;
        }
    });
    ReceiverStream::new(rx)
}

/// Lines collected into chunks and sent on.
struct Out<'a> {
    chunk: String,
    tx: &'a mpsc::Sender<Result<Bytes, std::io::Error>>,
}

impl Out<'_> {
    /// False when the reader went away.
    async fn line(&mut self, write: impl FnOnce(&mut String)) -> bool {
        write(&mut self.chunk);
        self.chunk.push('\n');
        if self.chunk.len() < CHUNK_BYTES {
            return true;
        }
        let full = std::mem::replace(&mut self.chunk, String::with_capacity(CHUNK_BYTES + 4096));
        self.tx.send(Ok(Bytes::from(full))).await.is_ok()
    }
}

async fn produce(
    pool: &PgPool,
    filter: ExportFilter,
    tx: &mpsc::Sender<Result<Bytes, std::io::Error>>,
) -> Result<(), sqlx::Error> {
    let mut db = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *db)
        .await?;
    sqlx::query("SELECT set_config('app.tenant_id', $1, true)")
        .bind(filter.tenant.to_string())
        .execute(&mut *db)
        .await?;
    let mut out = Out {
        chunk: String::with_capacity(CHUNK_BYTES + 4096),
        tx,
    };
    let header = json!({
        "type": "export",
        "format": EXPORT_FORMAT,
        "tenant_id": filter.tenant.to_string(),
        "since": filter.since.map(timestamp_text),
        "until": filter.until.map(timestamp_text),
        "complete": filter.is_complete(),
    });
    if !out.line(|o| o.push_str(&header.to_string())).await {
        return Ok(());
    }
    if !checkpoints(&mut db, filter, &mut out).await? {
        return Ok(());
    }
    let mut events = 0u64;
    {
        let tenant = filter.tenant.to_string();
        let mut rows = sqlx::query(
            r#"
SELECT global_position, aggregate_type, aggregate_id, sequence, event_type, event_version,
       recorded_at, payload::text AS payload, metadata::text AS metadata
  FROM events
 WHERE tenant_id = $1
   AND ($2::timestamptz IS NULL OR recorded_at >= $2)
   AND ($3::timestamptz IS NULL OR recorded_at < $3)
 ORDER BY global_position"#,
        )
        .bind(filter.tenant.0)
        .bind(filter.since)
        .bind(filter.until)
        .fetch(&mut *db);
        while let Some(row) = rows.try_next().await? {
            events += 1;
            if !out.line(|o| write_event(o, &tenant, &row)).await {
                return Ok(());
            }
        }
    }
    db.commit().await?;
    out.line(|o| o.push_str(&json!({"type": "end", "events": events}).to_string()))
        .await;
    if !out.chunk.is_empty() {
        let _ = tx.send(Ok(Bytes::from(out.chunk))).await;
    }
    Ok(())
}

/// The tenant's checkpoint chain up to the checkpoint covering the range (the newest
/// taken before `until`), then that checkpoint's heads. False when the reader left.
async fn checkpoints(
    db: &mut PgConnection,
    filter: ExportFilter,
    out: &mut Out<'_>,
) -> Result<bool, sqlx::Error> {
    let covering: Option<i64> = sqlx::query_scalar(
        "SELECT max(id) FROM checkpoints
          WHERE tenant_id = $1 AND ($2::timestamptz IS NULL OR taken_at <= $2)",
    )
    .bind(filter.tenant.0)
    .bind(filter.until)
    .fetch_one(&mut *db)
    .await?;
    let Some(covering) = covering else {
        return Ok(true);
    };
    let chain: Vec<StoredCheckpoint> = {
        let sql = format!(
            "SELECT {CHECKPOINT_COLUMNS} FROM checkpoints WHERE tenant_id = $1 AND id <= $2
              ORDER BY id"
        );
        let rows = sqlx::query(&sql)
            .bind(filter.tenant.0)
            .bind(covering)
            .fetch_all(&mut *db)
            .await?;
        rows.iter()
            .map(StoredCheckpoint::read)
            .collect::<Result<_, _>>()?
    };
    for c in chain {
        let line = json!({
            "type": "checkpoint",
            "id": c.id,
            "format": c.format,
            "counter": c.counter,
            "prev_digest": c.prev_digest,
            "taken_at": c.taken_at,
            "streams": c.streams,
            "digest": c.digest,
            "signature": c.signature,
            "public_key": c.public_key,
            "covering": c.id == covering,
        });
        if !out.line(|o| o.push_str(&line.to_string())).await {
            return Ok(false);
        }
    }
    let mut heads = sqlx::query(
        r#"
SELECT DISTINCT ON (aggregate_type, aggregate_id) aggregate_type, aggregate_id,
       last_sequence, last_hash
  FROM checkpoint_heads WHERE tenant_id = $1 AND checkpoint_id <= $2
 ORDER BY aggregate_type, aggregate_id, checkpoint_id DESC"#,
    )
    .bind(filter.tenant.0)
    .bind(covering)
    .fetch(&mut *db);
    while let Some(h) = heads.try_next().await? {
        let line = json!({
            "type": "head",
            "checkpoint_id": covering,
            "aggregate_type": h.get::<String, _>("aggregate_type"),
            "aggregate_id": h.get::<String, _>("aggregate_id"),
            "last_sequence": h.get::<i64, _>("last_sequence"),
            "last_hash": h.get::<String, _>("last_hash"),
        });
        if !out.line(|o| o.push_str(&line.to_string())).await {
            return Ok(false);
        }
    }
    Ok(true)
}

/// One event line. `payload` and `metadata` are embedded verbatim: Postgres's `json`
/// type keeps the stored text, which it has validated, so the payload an auditor hashes
/// is exactly the stored one. `hash` and `prev_hash` are in `metadata` only (one copy).
fn write_event(out: &mut String, tenant: &str, row: &sqlx::postgres::PgRow) {
    let text = |s: &str| serde_json::to_string(s).expect("strings serialize");
    let get = |name: &str| row.get::<Option<String>, _>(name).unwrap_or_default();
    let _ = write!(
        out,
        r#"{{"type":"event","global_position":{},"tenant_id":{},"aggregate_type":{},"aggregate_id":{},"sequence":{},"event_type":{},"event_version":{},"recorded_at":{},"payload":{},"metadata":{}}}"#,
        row.get::<i64, _>("global_position"),
        text(tenant),
        text(&get("aggregate_type")),
        text(&get("aggregate_id")),
        row.get::<i64, _>("sequence"),
        text(&get("event_type")),
        text(&get("event_version")),
        text(&timestamp_text(row.get("recorded_at"))),
        one_line(get("payload")),
        one_line(get("metadata")),
    );
}

/// Stored JSON text, on one line: a value stored with line breaks (only possible by
/// writing the table directly) is re-serialized compactly rather than breaking NDJSON.
fn one_line(json: String) -> String {
    if !json.contains(['\n', '\r']) {
        return json;
    }
    serde_json::from_str::<serde_json::Value>(&json)
        .map(|v| v.to_string())
        .unwrap_or_else(|_| serde_json::to_string(&json).expect("strings serialize"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_line_json_is_put_on_one_line() {
        assert_eq!(one_line("{\"a\":1}".into()), "{\"a\":1}");
        assert_eq!(
            one_line("{\n  \"a\": [1,\r\n 2]\n}".into()),
            "{\"a\":[1,2]}"
        );
    }
}
