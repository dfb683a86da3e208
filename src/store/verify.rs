//! Verification: recompute every stream's chain from the stored rows and report the
//! first broken link of each stream (chain.rs), streaming the log in constant memory.
//! `verify_log` adds what a chain alone cannot show: which events no trusted key
//! vouches for (a signature, or a signed checkpoint), the whole checkpoint chain of each
//! tenant and its newest checkpoint against the log (checkpoint_check.rs), and the
//! unprotected window (unprotected.rs).

use futures::TryStreamExt;
use serde::Serialize;
use sqlx::{PgConnection, PgPool};

use super::chain::{CHAIN_COLUMNS, ChainRow, StreamChain};
use super::checkpoint_check::{CheckpointSeen, Unvouched};
use super::trust::Trust;
use super::unprotected::Unprotected;
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

/// The kinds of break, by the snake_case name every surface (CLI, API, docs) uses.
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
    /// The stored payload is JSON but not in the canonical form (docs/audit.md).
    NonCanonicalPayload,
    /// No trusted signature and no trusted checkpoint vouches for this event and the
    /// rest of its stream: written by someone without the signing key.
    UnvouchedEvent,
    /// A head a checkpoint signed is gone: the stream's tail was deleted.
    TruncatedTail,
    /// A head a checkpoint signed now holds another event (the tail was replaced).
    CheckpointHeadMismatch,
    /// A checkpoint's stored heads no longer produce its digest.
    CheckpointDigestMismatch,
    /// A checkpoint's signature does not verify with a trusted key.
    CheckpointSignatureInvalid,
    /// A checkpoint does not follow its predecessor (counter or previous digest):
    /// checkpoints were deleted, inserted or reordered.
    CheckpointChainBroken,
    /// A checkpoint an auditor pinned (`--trusted-digest`) is no longer in the chain:
    /// the checkpoints were rolled back.
    CheckpointRollback,
}

impl BreakKind {
    /// The name reports print, equal to the JSON one.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SequenceGap => "sequence_gap",
            Self::PrevHashMismatch => "prev_hash_mismatch",
            Self::HashMismatch => "hash_mismatch",
            Self::UnreadablePayload => "unreadable_payload",
            Self::NonCanonicalPayload => "non_canonical_payload",
            Self::UnvouchedEvent => "unvouched_event",
            Self::TruncatedTail => "truncated_tail",
            Self::CheckpointHeadMismatch => "checkpoint_head_mismatch",
            Self::CheckpointDigestMismatch => "checkpoint_digest_mismatch",
            Self::CheckpointSignatureInvalid => "checkpoint_signature_invalid",
            Self::CheckpointChainBroken => "checkpoint_chain_broken",
            Self::CheckpointRollback => "checkpoint_rollback",
        }
    }
}

#[derive(Debug, Default, Serialize)]
pub struct VerifyReport {
    pub streams: u64,
    pub events: u64,
    pub breaks: Vec<ChainBreak>,
    /// The newest checkpoint of each tenant in scope, as checked (`verify_log` only).
    pub checkpoints: Vec<CheckpointSeen>,
    /// Whether checkpoint signatures were checked against configured keys (false:
    /// against the key stored beside each, because this process generated its own).
    pub checkpoint_key_trusted: bool,
    /// Whether event signatures were checked (false: no configured event key).
    pub signatures_checked: bool,
    /// Per tenant in scope, what no checkpoint protects yet (`verify_log` only).
    pub unprotected: Vec<Unprotected>,
}

impl VerifyReport {
    pub fn is_intact(&self) -> bool {
        self.breaks.is_empty()
    }
}

/// Verifies every stream's chain (of one tenant, or all) — links, canonical payloads,
/// hashes — without provenance or checkpoints. Runs in one REPEATABLE READ snapshot so
/// concurrent appends cannot produce false alarms.
pub async fn verify_chains(
    pool: &PgPool,
    tenant: Option<TenantId>,
) -> Result<VerifyReport, sqlx::Error> {
    let mut tx = begin_snapshot(pool, tenant).await?;
    let (report, _) = chains(&mut tx, tenant, None).await?;
    tx.commit().await?;
    Ok(report)
}

/// Everything, in one snapshot: chains, provenance, the checkpoint chains and the
/// unprotected window — what `chronicle audit verify` and `GET /v1/audit/verify`
/// report. Keys come from `trust` only (configuration or a keys file).
pub async fn verify_log(
    pool: &PgPool,
    tenant: Option<TenantId>,
    trust: &Trust,
) -> Result<VerifyReport, sqlx::Error> {
    let mut tx = begin_snapshot(pool, tenant).await?;
    let (mut report, unvouched) = chains(&mut tx, tenant, trust.event_keys.as_ref()).await?;
    let checked =
        super::checkpoint_check::check_all(&mut tx, tenant.map(|t| t.0), trust, &unvouched).await?;
    report.checkpoints = checked.newest;
    report.breaks.extend(checked.breaks);
    report.checkpoint_key_trusted = trust.checkpoint_keys.is_some();
    report.signatures_checked = trust.event_keys.is_some();
    report.unprotected = super::unprotected::window(&mut tx, tenant.map(|t| t.0)).await?;
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

/// One stream being read: its key and its chain so far.
struct Cursor {
    key: (String, String, String),
    chain: StreamChain,
}

/// The chains; with `keys`, also the streams whose tail no signature vouches for
/// (checkpoints may still vouch for them: checkpoint_check.rs decides).
async fn chains(
    conn: &mut PgConnection,
    tenant: Option<TenantId>,
    keys: Option<&std::collections::BTreeMap<String, ed25519_dalek::VerifyingKey>>,
) -> Result<(VerifyReport, Vec<Unvouched>), sqlx::Error> {
    let sql = format!(
        "SELECT {CHAIN_COLUMNS} FROM events WHERE $1::uuid IS NULL OR tenant_id = $1
          ORDER BY tenant_id, aggregate_type, aggregate_id, sequence"
    );
    let mut rows = sqlx::query(&sql)
        .bind(tenant.map(|t| t.0))
        .fetch(&mut *conn);
    let mut report = VerifyReport::default();
    let mut unvouched = Vec::new();
    let mut cursor: Option<Cursor> = None;
    while let Some(row) = rows.try_next().await? {
        let row = ChainRow::read(&row)?;
        report.events += 1;
        let same = cursor.as_ref().is_some_and(|c| {
            c.key.0 == row.tenant_id && c.key.1 == row.aggregate_type && c.key.2 == row.aggregate_id
        });
        if !same {
            report.streams += 1;
            let key = (
                row.tenant_id.clone(),
                row.aggregate_type.clone(),
                row.aggregate_id.clone(),
            );
            let next = Cursor {
                key,
                chain: StreamChain::from_genesis(),
            };
            if let Some(done) = cursor.replace(next) {
                unvouched.extend(finish(done, keys));
            }
        }
        let c = cursor.as_mut().expect("set above");
        if c.chain.is_broken() {
            continue; // report the first break of a stream only
        }
        if let Err(p) = c.chain.push(&row) {
            report.breaks.push(ChainBreak {
                tenant_id: c.key.0.clone(),
                aggregate_type: c.key.1.clone(),
                aggregate_id: c.key.2.clone(),
                sequence: p.sequence,
                problem: p.kind,
                expected: p.expected,
                found: p.found,
            });
        }
    }
    drop(rows);
    if let Some(done) = cursor {
        unvouched.extend(finish(done, keys));
    }
    Ok((report, unvouched))
}

/// An intact stream whose tail no trusted signature vouches for.
fn finish(
    c: Cursor,
    keys: Option<&std::collections::BTreeMap<String, ed25519_dalek::VerifyingKey>>,
) -> Option<Unvouched> {
    let keys = keys?;
    if c.chain.is_broken() {
        return None; // already reported
    }
    let (end, _) = c.chain.last();
    let vouched = c.chain.vouched(keys);
    let through = vouched.through.as_ref().map_or(0, |(s, _)| *s);
    (through < end).then(|| Unvouched {
        tenant_id: c.key.0,
        aggregate_type: c.key.1,
        aggregate_id: c.key.2,
        signed_through: through,
        end,
        why: vouched.rejected.unwrap_or_else(|| "no signature".into()),
    })
}

/// One event of a stream with the chain's verdict up to it: `None` when every link from
/// the stream's first event through this one verifies, else the first break's kind
/// (that event's, or an earlier one's). For a timeline that marks each entry.
pub async fn stream_marks(
    pool: &PgPool,
    stream: super::history::StreamRef<'_>,
) -> Result<Vec<(i64, Option<BreakKind>)>, sqlx::Error> {
    let sql = format!(
        "SELECT {CHAIN_COLUMNS} FROM events
          WHERE tenant_id = $1 AND aggregate_type = $2 AND aggregate_id = $3
          ORDER BY sequence"
    );
    let rows = sqlx::query(&sql)
        .bind(stream.tenant.0)
        .bind(stream.aggregate_type)
        .bind(stream.aggregate_id)
        .fetch_all(pool)
        .await?;
    let mut chain = StreamChain::from_genesis();
    let mut first_break = None;
    let mut marks = Vec::with_capacity(rows.len());
    for row in &rows {
        let row = ChainRow::read(row)?;
        if first_break.is_none()
            && let Err(problem) = chain.push(&row)
        {
            first_break = Some(problem.kind);
        }
        marks.push((row.sequence, first_break));
    }
    Ok(marks)
}
