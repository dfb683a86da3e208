//! Hash-chain verification: recompute every stream's chain from the stored rows and
//! report the first broken link of each stream. Streams the log in constant memory.
//! `verify_log` adds the newest signed checkpoint of each tenant (checkpoint_check.rs),
//! which catches what a chain alone cannot: a deleted tail.

use ed25519_dalek::VerifyingKey;
use futures::TryStreamExt;
use serde::Serialize;
use sqlx::{PgConnection, PgPool, Row};

use super::hash::{GENESIS_HASH, HashInput, canonical_json, event_hash};
use crate::ids::TenantId;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainBreak {
    pub tenant_id: String,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub problem: BreakKind,
    pub expected: String,
    pub found: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakKind {
    /// A sequence number is missing (an event was deleted) or out of place.
    SequenceGap,
    /// `prev_hash` does not match the previous event's hash (events removed or reordered).
    PrevHashMismatch,
    /// The stored hash does not match the recomputed one (the event was edited).
    HashMismatch,
    /// The payload is not valid JSON any more.
    UnreadablePayload,
    /// A head a checkpoint signed is gone: the stream's tail was deleted.
    TruncatedTail,
    /// A head a checkpoint signed now holds another event (the tail was replaced).
    CheckpointHeadMismatch,
    /// A checkpoint's stored heads no longer produce its digest.
    CheckpointDigestMismatch,
    /// A checkpoint's signature does not verify with the trusted key.
    CheckpointSignatureInvalid,
}

#[derive(Debug, Default, Serialize)]
pub struct VerifyReport {
    pub streams: u64,
    pub events: u64,
    pub breaks: Vec<ChainBreak>,
    /// The newest checkpoint of each tenant in scope, as checked (`verify_log` only).
    pub checkpoints: Vec<super::checkpoint_check::CheckpointSeen>,
    /// Whether checkpoint signatures were checked against the configured key (false:
    /// against the key stored beside each, because this process generated its own).
    pub checkpoint_key_trusted: bool,
}

impl VerifyReport {
    pub fn is_intact(&self) -> bool {
        self.breaks.is_empty()
    }
}

struct StreamCursor {
    key: (String, String, String),
    expected_sequence: i64,
    prev_hash: String,
    broken: bool,
}

/// Verifies every stream (of one tenant, or all). Runs in one REPEATABLE READ
/// snapshot so concurrent appends cannot produce false alarms.
pub async fn verify_chains(
    pool: &PgPool,
    tenant: Option<TenantId>,
) -> Result<VerifyReport, sqlx::Error> {
    let mut tx = begin_snapshot(pool, tenant).await?;
    let report = chains(&mut tx, tenant).await?;
    tx.commit().await?;
    Ok(report)
}

/// Chains plus the newest checkpoint of each tenant in scope, in one snapshot: what
/// `chronicle audit verify` and `GET /v1/audit/verify` report. `trusted` as in
/// `checkpoint_check::check_newest`.
pub async fn verify_log(
    pool: &PgPool,
    tenant: Option<TenantId>,
    trusted: Option<&VerifyingKey>,
) -> Result<VerifyReport, sqlx::Error> {
    let mut tx = begin_snapshot(pool, tenant).await?;
    let mut report = chains(&mut tx, tenant).await?;
    let (seen, breaks) =
        super::checkpoint_check::check_newest(&mut tx, tenant.map(|t| t.0), trusted).await?;
    report.checkpoints = seen;
    report.breaks.extend(breaks);
    report.checkpoint_key_trusted = trusted.is_some();
    tx.commit().await?;
    Ok(report)
}

/// A read-only REPEATABLE READ transaction; with a tenant, row-level security shows
/// that tenant's checkpoints to the API role.
async fn begin_snapshot(
    pool: &PgPool,
    tenant: Option<TenantId>,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *tx)
        .await?;
    if let Some(t) = tenant {
        sqlx::query("SELECT set_config('app.tenant_id', $1, true)")
            .bind(t.to_string())
            .execute(&mut *tx)
            .await?;
    }
    Ok(tx)
}

async fn chains(
    conn: &mut PgConnection,
    tenant: Option<TenantId>,
) -> Result<VerifyReport, sqlx::Error> {
    let mut rows = sqlx::query(
        r#"
SELECT tenant_id::text AS tenant_id, aggregate_type, aggregate_id, sequence, event_type,
       event_version, payload::text AS payload,
       metadata->>'prev_hash' AS prev_hash, metadata->>'hash' AS hash
  FROM events
 WHERE $1::uuid IS NULL OR tenant_id = $1
 ORDER BY tenant_id, aggregate_type, aggregate_id, sequence"#,
    )
    .bind(tenant.map(|t| t.0))
    .fetch(&mut *conn);

    let mut report = VerifyReport::default();
    let mut cursor: Option<StreamCursor> = None;
    while let Some(row) = rows.try_next().await? {
        report.events += 1;
        let key: (String, String, String) = (
            row.get("tenant_id"),
            row.get("aggregate_type"),
            row.get("aggregate_id"),
        );
        if cursor.as_ref().is_none_or(|c| c.key != key) {
            report.streams += 1;
            cursor = Some(StreamCursor {
                key,
                expected_sequence: 1,
                prev_hash: GENESIS_HASH.to_string(),
                broken: false,
            });
        }
        let c = cursor.as_mut().expect("set above");
        if c.broken {
            continue; // report the first break of a stream only
        }
        let sequence: i64 = row.get("sequence");
        let stored_prev: String = row
            .get::<Option<String>, _>("prev_hash")
            .unwrap_or_default();
        let stored_hash: String = row.get::<Option<String>, _>("hash").unwrap_or_default();
        let problem = check_link(c, sequence, &stored_prev, &stored_hash, &row);
        if let Some((problem, expected, found)) = problem {
            report.breaks.push(ChainBreak {
                tenant_id: c.key.0.clone(),
                aggregate_type: c.key.1.clone(),
                aggregate_id: c.key.2.clone(),
                sequence,
                problem,
                expected,
                found,
            });
            c.broken = true;
            continue;
        }
        c.expected_sequence += 1;
        c.prev_hash = stored_hash;
    }
    drop(rows);
    Ok(report)
}

/// Checks one event against its stream's chain so far; the problem, expected, found.
fn check_link(
    c: &StreamCursor,
    sequence: i64,
    stored_prev: &str,
    stored_hash: &str,
    row: &sqlx::postgres::PgRow,
) -> Option<(BreakKind, String, String)> {
    if sequence != c.expected_sequence {
        return Some((
            BreakKind::SequenceGap,
            c.expected_sequence.to_string(),
            sequence.to_string(),
        ));
    }
    if stored_prev != c.prev_hash {
        return Some((
            BreakKind::PrevHashMismatch,
            c.prev_hash.clone(),
            stored_prev.to_string(),
        ));
    }
    let payload_text: String = row.get("payload");
    let Ok(value) = serde_json::from_str(&payload_text) else {
        return Some((BreakKind::UnreadablePayload, "JSON".into(), payload_text));
    };
    let recomputed = event_hash(&HashInput {
        tenant_id: &c.key.0,
        aggregate_type: &c.key.1,
        aggregate_id: &c.key.2,
        sequence: sequence as u64,
        event_type: row.get("event_type"),
        event_version: row.get("event_version"),
        payload: &canonical_json(&value),
        prev_hash: stored_prev,
    });
    (recomputed != stored_hash)
        .then(|| (BreakKind::HashMismatch, recomputed, stored_hash.to_string()))
}
