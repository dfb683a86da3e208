//! Signed checkpoints: per tenant, the head (last sequence and hash) of every stream,
//! a SHA-256 digest over them in a documented canonical form, and an Ed25519 signature
//! of that digest. A per-stream hash chain cannot show that a stream's *tail* was
//! deleted; a checkpoint can: every head it signed must still be in the log.
//!
//! The encoding is specified in docs/audit.md for auditors who do not run our code;
//! `tests::worked_example` pins it. Taking checkpoints runs in the worker
//! (`run_periodically`); checking them is checkpoint_check.rs.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, SubsecRound, Utc};
use ed25519_dalek::Signer;
use futures::TryStreamExt;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool, Row};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::CheckpointKey;

const DOMAIN_TAG: &[u8] = b"chronicle-checkpoint-v1\n";

/// Advisory lock key: one instance at a time takes checkpoints ("chkp" in ASCII).
const LOCK_KEY: i64 = 0x6368_6b70;

/// The end of one stream's chain.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Head {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub hash: String,
}

/// The text form of `taken_at` that the digest covers: RFC 3339, UTC, microseconds
/// (Postgres's precision), e.g. `2026-11-25T14:30:00.123456Z`.
pub fn timestamp_text(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// Feeds the canonical encoding to `out`: `"chronicle-checkpoint-v1\n"`, then as
/// `<byte length>:<bytes>\n` fields the tenant, `taken_at`, the number of heads, and for
/// each head (sorted by aggregate type, then id, by bytes) its type, id, sequence, hash.
/// `heads` must already be sorted.
pub fn encode(tenant: Uuid, taken_at: &str, heads: &[Head], mut out: impl FnMut(&[u8])) {
    let mut field = |text: &str| {
        out(text.len().to_string().as_bytes());
        out(b":");
        out(text.as_bytes());
        out(b"\n");
    };
    field(&tenant.hyphenated().to_string());
    field(taken_at);
    field(&heads.len().to_string());
    for h in heads {
        field(&h.aggregate_type);
        field(&h.aggregate_id);
        field(&h.sequence.to_string());
        field(&h.hash);
    }
}

/// SHA-256 of the canonical encoding (32 bytes; what is signed).
pub fn digest(tenant: Uuid, taken_at: &str, heads: &[Head]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(DOMAIN_TAG);
    encode(tenant, taken_at, heads, |bytes| hasher.update(bytes));
    hasher.finalize().into()
}

/// Sorts heads into digest order (byte order, like `COLLATE "C"`).
pub fn sort_heads(heads: &mut [Head]) {
    heads.sort_by(|a, b| {
        (a.aggregate_type.as_bytes(), a.aggregate_id.as_bytes())
            .cmp(&(b.aggregate_type.as_bytes(), b.aggregate_id.as_bytes()))
    });
}

/// What one new checkpoint recorded.
#[derive(Debug, Clone)]
pub struct CheckpointTaken {
    pub id: i64,
    pub tenant_id: Uuid,
    pub streams: usize,
    /// Heads stored with this checkpoint (new or moved since the previous one).
    pub changed: usize,
    pub digest: String,
}

/// Takes a checkpoint of every tenant whose heads moved since its previous one, all
/// from one REPEATABLE READ snapshot of the log. Returns what was recorded; nothing
/// when another instance is taking checkpoints right now.
pub async fn take_all(pool: &PgPool, key: &CheckpointKey) -> anyhow::Result<Vec<CheckpointTaken>> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .execute(&mut *tx)
        .await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(LOCK_KEY)
        .fetch_one(&mut *tx)
        .await?;
    if !locked {
        return Ok(Vec::new());
    }
    let mut taken = Vec::new();
    for tenant in tenants(&mut tx).await? {
        if let Some(c) = take(&mut tx, tenant, key).await? {
            taken.push(c);
        }
    }
    tx.commit().await?;
    Ok(taken)
}

/// Every tenant with events: a loose index scan over the primary key, one probe per
/// tenant instead of reading every event.
async fn tenants(conn: &mut PgConnection) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        r#"
WITH RECURSIVE t AS (
    (SELECT tenant_id AS id FROM events ORDER BY tenant_id LIMIT 1)
    UNION ALL
    SELECT (SELECT e.tenant_id FROM events e WHERE e.tenant_id > t.id ORDER BY e.tenant_id LIMIT 1)
      FROM t WHERE t.id IS NOT NULL)
SELECT id FROM t WHERE id IS NOT NULL"#,
    )
    .fetch_all(conn)
    .await
}

/// The tenant's heads now, from the events themselves, in digest order.
pub async fn current_heads(
    conn: &mut PgConnection,
    tenant: Uuid,
) -> Result<Vec<Head>, sqlx::Error> {
    let rows = sqlx::query(
        r#"
SELECT DISTINCT ON (aggregate_type, aggregate_id) aggregate_type, aggregate_id, sequence,
       metadata->>'hash' AS hash
  FROM events WHERE tenant_id = $1
 ORDER BY aggregate_type, aggregate_id, sequence DESC"#,
    )
    .bind(tenant)
    .fetch(&mut *conn);
    let mut heads: Vec<Head> = rows
        .map_ok(|r| Head {
            aggregate_type: r.get("aggregate_type"),
            aggregate_id: r.get("aggregate_id"),
            sequence: r.get("sequence"),
            hash: r.get::<Option<String>, _>("hash").unwrap_or_default(),
        })
        .try_collect()
        .await?;
    sort_heads(&mut heads);
    Ok(heads)
}

/// All heads checkpoint `id` covers (its own rows plus unchanged earlier ones), in
/// digest order.
pub async fn heads_at(
    conn: &mut PgConnection,
    tenant: Uuid,
    id: i64,
) -> Result<Vec<Head>, sqlx::Error> {
    let rows = sqlx::query(
        r#"
SELECT DISTINCT ON (aggregate_type, aggregate_id) aggregate_type, aggregate_id,
       last_sequence, last_hash
  FROM checkpoint_heads WHERE tenant_id = $1 AND checkpoint_id <= $2
 ORDER BY aggregate_type, aggregate_id, checkpoint_id DESC"#,
    )
    .bind(tenant)
    .bind(id)
    .fetch(&mut *conn);
    let mut heads: Vec<Head> = rows
        .map_ok(|r| Head {
            aggregate_type: r.get("aggregate_type"),
            aggregate_id: r.get("aggregate_id"),
            sequence: r.get("last_sequence"),
            hash: r.get("last_hash"),
        })
        .try_collect()
        .await?;
    sort_heads(&mut heads);
    Ok(heads)
}

/// The tenant's newest checkpoint id.
pub async fn newest(conn: &mut PgConnection, tenant: Uuid) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT max(id) FROM checkpoints WHERE tenant_id = $1")
        .bind(tenant)
        .fetch_one(conn)
        .await
}

/// One tenant's checkpoint inside the caller's snapshot; `None` when no head moved.
async fn take(
    conn: &mut PgConnection,
    tenant: Uuid,
    key: &CheckpointKey,
) -> anyhow::Result<Option<CheckpointTaken>> {
    let current = current_heads(conn, tenant).await?;
    let previous = match newest(conn, tenant).await? {
        Some(id) => heads_at(conn, tenant, id).await?,
        None => Vec::new(),
    };
    let moved = super::checkpoint_merge::moved_forward(&current, &previous);
    let broken = super::checkpoint_merge::contradicted(conn, tenant, &moved).await?;
    let merged = super::checkpoint_merge::merge(&current, &previous, &broken);
    if merged.withheld > 0 {
        tracing::error!(
            tenant = %tenant,
            streams = merged.withheld,
            "the log contradicts the previous checkpoint (deleted or replaced events); \
             keeping the signed heads of those streams — run `chronicle audit verify`"
        );
    }
    if merged.changed.is_empty() {
        return Ok(None);
    }
    let heads = merged.heads;
    let changed: Vec<&Head> = merged.changed.iter().map(|i| &heads[*i]).collect();
    let taken_at = Utc::now().trunc_subsecs(6);
    let digest = digest(tenant, &timestamp_text(taken_at), &heads);
    let signature = key.signing().sign(&digest);
    let digest_hex = hex::encode(digest);
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO checkpoints (tenant_id, taken_at, streams, digest, signature, public_key)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(tenant)
    .bind(taken_at)
    .bind(heads.len() as i64)
    .bind(&digest_hex)
    .bind(STANDARD.encode(signature.to_bytes()))
    .bind(key.public_base64())
    .fetch_one(&mut *conn)
    .await?;
    for chunk in changed.chunks(5000) {
        sqlx::query(
            "INSERT INTO checkpoint_heads (checkpoint_id, tenant_id, aggregate_type, aggregate_id,
                                           last_sequence, last_hash)
             SELECT $1, $2, u.t, u.a, u.s, u.h
               FROM unnest($3::text[], $4::text[], $5::bigint[], $6::text[]) AS u(t, a, s, h)",
        )
        .bind(id)
        .bind(tenant)
        .bind(
            chunk
                .iter()
                .map(|h| h.aggregate_type.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            chunk
                .iter()
                .map(|h| h.aggregate_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(chunk.iter().map(|h| h.sequence).collect::<Vec<_>>())
        .bind(chunk.iter().map(|h| h.hash.as_str()).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    Ok(Some(CheckpointTaken {
        id,
        tenant_id: tenant,
        streams: heads.len(),
        changed: changed.len(),
        digest: digest_hex,
    }))
}

/// The worker's loop: a checkpoint round every `every` until shutdown.
pub async fn run_periodically(
    pool: PgPool,
    key: CheckpointKey,
    every: Duration,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        match take_all(&pool, &key).await {
            Ok(taken) if taken.is_empty() => {}
            Ok(taken) => tracing::info!(tenants = taken.len(), "recorded signed checkpoints"),
            Err(err) => tracing::warn!(error = format!("{err:#}"), "taking checkpoints failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signature, Verifier};

    fn example() -> (Uuid, String, Vec<Head>) {
        let tenant = Uuid::parse_str("01890a5d-ac96-774b-bcce-b302099a8057").unwrap();
        let mut heads = vec![
            Head {
                aggregate_type: "file".into(),
                aggregate_id: "01890a5d-ac96-774b-bcce-b302099a8058".into(),
                sequence: 1,
                hash: "5d4a46fec6d6198a9825ecd02c2359b3f4982fcca811f4554f9df77d0a4cc9f3".into(),
            },
            Head {
                aggregate_type: "file".into(),
                aggregate_id: "01890a5d-ac96-774b-bcce-b302099a8059".into(),
                sequence: 3,
                hash: "ab".repeat(32),
            },
        ];
        heads.reverse();
        sort_heads(&mut heads);
        (tenant, "2026-11-25T14:30:00.000000Z".into(), heads)
    }

    /// The example in docs/audit.md: its bytes, digest, key and signature.
    #[test]
    fn worked_example() {
        let (tenant, at, heads) = example();
        let mut bytes = DOMAIN_TAG.to_vec();
        encode(tenant, &at, &heads, |b| bytes.extend_from_slice(b));
        let docs = include_str!("../../docs/audit.md");
        let shown = String::from_utf8(bytes).unwrap().replace('\n', "\\n");
        assert!(
            docs.contains(&shown),
            "docs/audit.md must show the bytes {shown}"
        );
        let digest = digest(tenant, &at, &heads);
        assert!(
            docs.contains(&hex::encode(digest)),
            "digest {}",
            hex::encode(digest)
        );
        // The documented example key: seed = 32 bytes of 0x07.
        let key = CheckpointKey::from_seed([7u8; 32]);
        let public = key.public_base64();
        assert!(docs.contains(&public), "public key {public}");
        let signature = STANDARD.encode(key.signing().sign(&digest).to_bytes());
        assert!(docs.contains(&signature), "signature {signature}");
    }

    #[test]
    fn every_head_field_and_the_order_matter() {
        let (tenant, at, heads) = example();
        let base = digest(tenant, &at, &heads);
        let mut variants = Vec::new();
        for i in 0..4 {
            let mut h = heads.clone();
            match i {
                0 => h[1].sequence = 4,
                1 => h[1].hash = "cd".repeat(32),
                2 => h.truncate(1),
                _ => h.swap(0, 1),
            }
            variants.push(digest(tenant, &at, &h));
        }
        variants.push(digest(Uuid::nil(), &at, &heads));
        variants.push(digest(tenant, "2026-11-25T14:30:00.000001Z", &heads));
        for v in variants {
            assert_ne!(v, base);
        }
    }

    #[test]
    fn signatures_verify_only_for_the_signed_digest_and_key() {
        let (tenant, at, heads) = example();
        let d = digest(tenant, &at, &heads);
        let key = CheckpointKey::from_seed([3u8; 32]);
        let sig: Signature = key.signing().sign(&d);
        assert!(key.verifying().verify(&d, &sig).is_ok());
        let mut other = d;
        other[0] ^= 1;
        assert!(key.verifying().verify(&other, &sig).is_err());
        let stranger = CheckpointKey::from_seed([4u8; 32]);
        assert!(stranger.verifying().verify(&d, &sig).is_err());
    }

    #[test]
    fn timestamps_have_microseconds_and_z() {
        let at = DateTime::from_timestamp_micros(1_764_081_000_000_001).unwrap();
        assert_eq!(timestamp_text(at), "2025-11-25T14:30:00.000001Z");
    }
}
