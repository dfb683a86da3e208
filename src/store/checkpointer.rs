//! Taking checkpoints: per tenant whose log moved, under one REPEATABLE READ snapshot
//! and a transaction-scoped advisory lock (one instance at a time). Each new checkpoint
//! continues its tenant's chain (counter + 1, the previous digest), and only after the
//! previous checkpoint was checked against the trusted keys and every new head was
//! vetted (checkpoint_vet.rs): a checkpointer never builds on a forged checkpoint nor
//! signs a head whose chain does not verify.

use std::collections::HashSet;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{SubsecRound, Utc};
use ed25519_dalek::Signer;
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::checkpoint::{
    ChainLink, GENESIS_DIGEST, Head, current_heads, digest, heads_at, newest, sort_heads,
    timestamp_text,
};
use super::checkpoint_merge::{contradicted, merge, moved_forward};
use super::checkpoint_vet::{Candidate, vet};
use super::trust::Trust;
use crate::config::{CheckpointKey, Config};

/// Advisory lock key: one instance at a time takes checkpoints ("chkp" in ASCII).
const LOCK_KEY: i64 = 0x6368_6b70;

/// What the checkpointer signs with and what it trusts.
#[derive(Debug, Clone)]
pub struct Checkpointer {
    pub key: CheckpointKey,
    /// Event keys vet new heads; checkpoint keys vet the previous checkpoint.
    pub trust: Trust,
    /// Sign chains that no trusted event signature vouches for. Only for adopting, once,
    /// events written before Chronicle signed its events (`chronicle audit checkpoint
    /// --adopt-unsigned`, docs/audit.md "Upgrading"); never in the worker's loop.
    pub adopt_unsigned: bool,
}

impl Checkpointer {
    pub fn from_config(config: &Config) -> Self {
        Self {
            key: config.checkpoints.key.clone(),
            trust: Trust::from_config(config),
            adopt_unsigned: false,
        }
    }
}

/// What one new checkpoint recorded.
#[derive(Debug, Clone)]
pub struct CheckpointTaken {
    pub id: i64,
    pub tenant_id: Uuid,
    pub counter: i64,
    pub streams: usize,
    /// Heads stored with this checkpoint (new or moved since the previous one).
    pub changed: usize,
    /// Streams whose previously signed head was kept: the log contradicts it, or what
    /// follows it does not verify.
    pub withheld: usize,
    pub digest: String,
}

/// One round: the checkpoints taken; the tenants refused because their newest
/// checkpoint does not verify (with the reason); and per tenant the streams whose new
/// events were not signed because they do not verify or no trusted key signed them.
#[derive(Debug, Default)]
pub struct Round {
    pub taken: Vec<CheckpointTaken>,
    pub refused: Vec<(Uuid, String)>,
    pub unsigned: Vec<(Uuid, Vec<String>)>,
}

/// Takes a checkpoint of every tenant whose heads moved since its previous one, all
/// from one REPEATABLE READ snapshot of the log. Nothing when another instance is
/// taking checkpoints right now.
pub async fn take_all(pool: &PgPool, c: &Checkpointer) -> anyhow::Result<Round> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .execute(&mut *tx)
        .await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(LOCK_KEY)
        .fetch_one(&mut *tx)
        .await?;
    let mut round = Round::default();
    if !locked {
        return Ok(round);
    }
    for tenant in tenants(&mut tx).await? {
        match take(&mut tx, tenant, c).await? {
            Ok((taken, unsigned)) => {
                round.taken.extend(taken);
                if !unsigned.is_empty() {
                    round.unsigned.push((tenant, unsigned));
                }
            }
            Err(why) => {
                tracing::error!(tenant = %tenant, reason = %why,
                    "not taking a checkpoint: the newest one does not verify — run `chronicle audit verify`");
                round.refused.push((tenant, why));
            }
        }
    }
    tx.commit().await?;
    Ok(round)
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

/// What one tenant's round did: the checkpoint (`None` when no head moved) and the
/// streams whose new events were not signed.
type Outcome = (Option<CheckpointTaken>, Vec<String>);

/// One tenant's checkpoint inside the caller's snapshot; the inner `Err` when the
/// newest checkpoint does not verify.
async fn take(
    conn: &mut PgConnection,
    tenant: Uuid,
    c: &Checkpointer,
) -> anyhow::Result<Result<Outcome, String>> {
    let previous_row = newest(conn, tenant).await?;
    let previous = match &previous_row {
        Some(row) => {
            let heads = heads_at(conn, tenant, row.id).await?;
            let keys = c.trust.checkpoint_keys.as_deref();
            if let Some((_, found)) = row.signature_problem(keys) {
                return Ok(Err(format!(
                    "checkpoint {} is not signed by a trusted key: {found}",
                    row.id
                )));
            }
            if row.recompute_digest(&heads) != row.digest {
                return Ok(Err(format!(
                    "checkpoint {}'s heads no longer give its digest",
                    row.id
                )));
            }
            heads
        }
        None => Vec::new(),
    };
    let current = current_heads(conn, tenant).await?;
    let moved = moved_forward(&current, &previous);
    let broken = contradicted(conn, tenant, &moved).await?;
    let mut candidates = Vec::new();
    let mut unchanged = Vec::new();
    for head in &current {
        let stream = (head.aggregate_type.clone(), head.aggregate_id.clone());
        let before = previous
            .binary_search_by(|p| key(p).cmp(&key(head)))
            .ok()
            .map(|i| &previous[i]);
        match before {
            None => candidates.push(Candidate {
                aggregate_type: &head.aggregate_type,
                aggregate_id: &head.aggregate_id,
                signed: None,
            }),
            Some(p) if head.sequence > p.sequence && !broken.contains(&stream) => {
                candidates.push(Candidate {
                    aggregate_type: &head.aggregate_type,
                    aggregate_id: &head.aggregate_id,
                    signed: Some((p.sequence, &p.hash)),
                })
            }
            // Unchanged, moved back or contradicted: merge keeps the signed head.
            Some(_) if broken.contains(&stream) => {}
            Some(_) => unchanged.push(head.clone()),
        }
    }
    let keys = if c.adopt_unsigned {
        None
    } else {
        c.trust.event_keys.as_ref()
    };
    let vetted = vet(conn, tenant, &candidates, keys).await?;
    if !vetted.refused.is_empty() {
        tracing::error!(
            tenant = %tenant,
            streams = vetted.refused.len(),
            first = %vetted.refused[0],
            "new events that do not verify or that no trusted key signed; \
             not signing them — run `chronicle audit verify`"
        );
    }
    let mut proposed = unchanged;
    proposed.extend(vetted.heads);
    sort_heads(&mut proposed);
    let merged = merge(&proposed, &previous, &HashSet::new());
    if merged.withheld > vetted.refused.len() {
        tracing::error!(
            tenant = %tenant,
            streams = merged.withheld,
            "the log contradicts the previous checkpoint (deleted or replaced events); \
             keeping the signed heads of those streams — run `chronicle audit verify`"
        );
    }
    if merged.changed.is_empty() {
        return Ok(Ok((None, vetted.refused)));
    }
    let link = ChainLink {
        counter: previous_row.as_ref().and_then(|p| p.counter).unwrap_or(0) + 1,
        prev_digest: previous_row.as_ref().map_or(GENESIS_DIGEST, |p| &p.digest),
    };
    let changed: Vec<&Head> = merged.changed.iter().map(|i| &merged.heads[*i]).collect();
    let (id, digest_hex) = insert(conn, tenant, &c.key, link, &merged.heads, &changed).await?;
    let taken = CheckpointTaken {
        id,
        tenant_id: tenant,
        counter: link.counter,
        streams: merged.heads.len(),
        changed: changed.len(),
        withheld: merged.withheld,
        digest: digest_hex,
    };
    Ok(Ok((Some(taken), vetted.refused)))
}

fn key(h: &Head) -> (&[u8], &[u8]) {
    (h.aggregate_type.as_bytes(), h.aggregate_id.as_bytes())
}

/// Signs and stores one checkpoint with the heads that changed; `(id, digest hex)`.
async fn insert(
    conn: &mut PgConnection,
    tenant: Uuid,
    key: &CheckpointKey,
    link: ChainLink<'_>,
    heads: &[Head],
    changed: &[&Head],
) -> Result<(i64, String), sqlx::Error> {
    let taken_at = Utc::now().trunc_subsecs(6);
    let digest = digest(tenant, &timestamp_text(taken_at), Some(link), heads);
    let signature = key.signing().sign(&digest);
    let digest_hex = hex::encode(digest);
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO checkpoints (tenant_id, taken_at, streams, format, counter, prev_digest,
                                  digest, signature, public_key)
         VALUES ($1, $2, $3, 2, $4, $5, $6, $7, $8) RETURNING id",
    )
    .bind(tenant)
    .bind(taken_at)
    .bind(heads.len() as i64)
    .bind(link.counter)
    .bind(link.prev_digest)
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
    Ok((id, digest_hex))
}

/// The worker's loop: a checkpoint round every `every` until shutdown.
pub async fn run_periodically(
    pool: PgPool,
    checkpointer: Checkpointer,
    every: Duration,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        match take_all(&pool, &checkpointer).await {
            Ok(round) if round.taken.is_empty() => {}
            Ok(round) => {
                tracing::info!(tenants = round.taken.len(), "recorded signed checkpoints")
            }
            Err(err) => tracing::warn!(error = format!("{err:#}"), "taking checkpoints failed"),
        }
    }
}
