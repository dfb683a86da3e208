//! NDJSON export of a tenant's events — one event per line with its metadata and
//! hashes, in global (append) order — for `chronicle audit export` and
//! `GET /v1/audit/export`. Constant memory whatever the size: rows are streamed from
//! Postgres (one statement, so one consistent snapshot) and handed on in ~64 KiB chunks
//! through a bounded channel, so a slow reader slows the query instead of filling RAM.

use std::fmt::Write as _;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{Stream, TryStreamExt};
use sqlx::{PgPool, Row};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::checkpoint::timestamp_text;
use crate::ids::TenantId;

/// Flush a chunk once it holds this many bytes.
const CHUNK_BYTES: usize = 64 * 1024;
/// Chunks in flight between the query and the reader.
const CHUNKS_IN_FLIGHT: usize = 4;

/// Which events to export: one tenant, `since <= recorded_at < until`.
#[derive(Debug, Clone, Copy)]
pub struct ExportFilter {
    pub tenant: TenantId,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// The export as a stream of NDJSON chunks (each ends with a newline). An error ends
/// the stream; the reader sees a truncated export, never a silently partial one that
/// looks complete (the last line is whole and the error is the stream's last item).
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

async fn produce(
    pool: &PgPool,
    filter: ExportFilter,
    tx: &mpsc::Sender<Result<Bytes, std::io::Error>>,
) -> Result<(), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let mut rows = sqlx::query(
        r#"
SELECT global_position, aggregate_type, aggregate_id, sequence, event_type, event_version,
       recorded_at, payload::text AS payload, metadata::text AS metadata,
       metadata->>'prev_hash' AS prev_hash, metadata->>'hash' AS hash
  FROM events
 WHERE tenant_id = $1
   AND ($2::timestamptz IS NULL OR recorded_at >= $2)
   AND ($3::timestamptz IS NULL OR recorded_at < $3)
 ORDER BY global_position"#,
    )
    .bind(filter.tenant.0)
    .bind(filter.since)
    .bind(filter.until)
    .fetch(&mut *conn);
    let tenant = filter.tenant.to_string();
    let mut chunk = String::with_capacity(CHUNK_BYTES + 4096);
    while let Some(row) = rows.try_next().await? {
        write_line(&mut chunk, &tenant, &row);
        if chunk.len() >= CHUNK_BYTES {
            let full = std::mem::replace(&mut chunk, String::with_capacity(CHUNK_BYTES + 4096));
            if tx.send(Ok(Bytes::from(full))).await.is_err() {
                return Ok(()); // the reader went away
            }
        }
    }
    if !chunk.is_empty() {
        let _ = tx.send(Ok(Bytes::from(chunk))).await;
    }
    Ok(())
}

/// One line. `payload` and `metadata` are embedded verbatim: Postgres's `json` type
/// keeps the stored text, which it has validated, so the payload an auditor hashes is
/// exactly the stored one.
fn write_line(out: &mut String, tenant: &str, row: &sqlx::postgres::PgRow) {
    let text = |s: &str| serde_json::to_string(s).expect("strings serialize");
    let get = |name: &str| row.get::<Option<String>, _>(name).unwrap_or_default();
    let _ = write!(
        out,
        r#"{{"global_position":{},"tenant_id":{},"aggregate_type":{},"aggregate_id":{},"sequence":{},"event_type":{},"event_version":{},"recorded_at":{},"payload":{},"metadata":{},"prev_hash":{},"hash":{}}}"#,
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
        text(&get("prev_hash")),
        text(&get("hash")),
    );
    out.push('\n');
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
