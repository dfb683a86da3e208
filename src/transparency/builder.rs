//! The tree builder: appends every committed event as the next leaf of its tenant's
//! Merkle tree, in the order projectors apply events (docs/projections.md) —
//! `(transaction_id, global_position)`, only events of transactions older than every
//! running one — so no event can later appear before a leaf already handed out.
//!
//! Like a projector batch, one batch is one transaction: lock the `merkle_builder` row
//! (the lease: one instance at a time), read the next events, append their leaves, move
//! the position, commit. A crash anywhere rolls all of it back, so no event is skipped
//! or gets two leaves (`merkle_leaves.global_position` is unique besides). It is not a
//! `Projector`: a projector parks an event it cannot read and moves on, which for a log
//! would be a skipped leaf. The builder reads only the stored hash text, which every row
//! has (or lacks, which is a leaf too), so no event can stop it; a database error rolls
//! the batch back and it is retried.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sqlx::{PgConnection, PgPool, Row};
use tlog_tiles::{Hash, stored_hash_index, stored_hashes_for_record_hash, sub_tree_index};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::hashes::{TileWrites, load_many};
use super::heads;
use crate::config::{CheckpointKey, TransparencySettings};

/// Events per batch (one transaction).
pub const BATCH_SIZE: i64 = 1000;
/// How often an idle builder looks for new events.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// How often the builder looks for trees whose head is due for signing.
const SIGN_CHECK_INTERVAL: Duration = Duration::from_secs(1);

const NEXT_EVENTS_SQL: &str = r#"
SELECT transaction_id::text AS xid, global_position, tenant_id, metadata->>'hash' AS hash
  FROM events
 WHERE (transaction_id, global_position) > ($1::text::xid8, $2)
   AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
 ORDER BY events.transaction_id, events.global_position
 LIMIT $3"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildOutcome {
    /// Appended this many leaves (more events may be waiting).
    Appended(usize),
    /// Nothing new to append.
    Idle,
    /// Another instance holds the builder's lease right now.
    Busy,
}

/// Locks the builder's row; `None` when another instance holds it.
pub(super) async fn lease(conn: &mut PgConnection) -> Result<Option<(String, i64)>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT last_transaction_id::text AS xid, last_position FROM merkle_builder
          FOR UPDATE SKIP LOCKED",
    )
    .fetch_optional(conn)
    .await?;
    row.map(|r| Ok((r.try_get("xid")?, r.try_get("last_position")?)))
        .transpose()
}

/// One event's leaf, as read.
struct Pending {
    global_position: i64,
    leaf: Hash,
}

/// Appends the leaves of up to `limit` events in one transaction.
pub async fn run_batch(pool: &PgPool, limit: i64) -> anyhow::Result<BuildOutcome> {
    let mut tx = pool.begin().await?;
    let Some((xid, position)) = lease(&mut tx).await? else {
        return Ok(BuildOutcome::Busy);
    };
    let rows = sqlx::query(NEXT_EVENTS_SQL)
        .bind(&xid)
        .bind(position)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
    let Some(last) = rows.last() else {
        tx.commit().await?;
        return Ok(BuildOutcome::Idle);
    };
    let (last_xid, last_position): (String, i64) =
        (last.try_get("xid")?, last.try_get("global_position")?);

    // Per tenant, in catch-up order.
    let mut order: Vec<Uuid> = Vec::new();
    let mut pending: HashMap<Uuid, Vec<Pending>> = HashMap::new();
    for r in &rows {
        let tenant: Uuid = r.try_get("tenant_id")?;
        let hash: Option<String> = r.try_get("hash")?;
        pending
            .entry(tenant)
            .or_insert_with(|| {
                order.push(tenant);
                Vec::new()
            })
            .push(Pending {
                global_position: r.try_get("global_position")?,
                leaf: super::leaf_hash(hash.as_deref()),
            });
    }

    let sizes = sizes(&mut tx, &order).await?;
    // The right edge of each tree (its complete subtrees): all that appending reads.
    let wanted: Vec<(Uuid, Vec<u64>)> = order
        .iter()
        .map(|t| (*t, sub_tree_index(0, sizes[t], Vec::new())))
        .collect();
    let mut frontiers = load_many(&mut tx, &wanted).await?;

    let mut writes = TileWrites::default();
    let (mut leaf_tenants, mut leaf_indexes, mut leaf_positions) = (vec![], vec![], vec![]);
    let (mut tree_tenants, mut tree_sizes, mut tree_roots) = (vec![], vec![], vec![]);
    for tenant in &order {
        let mut hashes = frontiers.remove(tenant).unwrap_or_default();
        let size = sizes[tenant];
        let first = stored_hash_index(0, size);
        let mut new: Vec<Hash> = Vec::new();
        let mut n = size;
        for event in &pending[tenant] {
            let stored = stored_hashes_for_record_hash(n, event.leaf, &hashes)?;
            let at = stored_hash_index(0, n);
            for (i, h) in stored.iter().enumerate() {
                hashes.insert(at + i as u64, *h);
            }
            new.extend(stored);
            leaf_tenants.push(*tenant);
            leaf_indexes.push(n as i64);
            leaf_positions.push(event.global_position);
            n += 1;
        }
        writes.add(*tenant, first, &new);
        tree_tenants.push(*tenant);
        tree_sizes.push(n as i64);
        tree_roots.push(tlog_tiles::tree_hash(n, &hashes)?.0.to_vec());
    }

    writes.write(&mut tx).await?;
    sqlx::query(
        "INSERT INTO merkle_leaves (tenant_id, leaf_index, global_position)
         SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::bigint[])",
    )
    .bind(&leaf_tenants)
    .bind(&leaf_indexes)
    .bind(&leaf_positions)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO merkle_trees (tenant_id, size, root, updated_at)
         SELECT t, s, r, now() FROM unnest($1::uuid[], $2::bigint[], $3::bytea[]) AS u(t, s, r)
         ON CONFLICT (tenant_id) DO UPDATE
            SET size = EXCLUDED.size, root = EXCLUDED.root, updated_at = EXCLUDED.updated_at",
    )
    .bind(&tree_tenants)
    .bind(&tree_sizes)
    .bind(&tree_roots)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE merkle_builder SET last_transaction_id = $1::text::xid8, last_position = $2,
                leaves_appended = leaves_appended + $3, updated_at = now()",
    )
    .bind(&last_xid)
    .bind(last_position)
    .bind(rows.len() as i64)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(BuildOutcome::Appended(rows.len()))
}

/// Each tenant's tree size now (0 for a tenant without a tree), rows locked.
async fn sizes(
    conn: &mut PgConnection,
    tenants: &[Uuid],
) -> Result<HashMap<Uuid, u64>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT tenant_id, size FROM merkle_trees WHERE tenant_id = ANY($1) FOR UPDATE",
    )
    .bind(tenants)
    .fetch_all(conn)
    .await?;
    let mut sizes: HashMap<Uuid, u64> = tenants.iter().map(|t| (*t, 0)).collect();
    for r in rows {
        sizes.insert(r.try_get("tenant_id")?, r.try_get::<i64, _>("size")? as u64);
    }
    Ok(sizes)
}

/// Appends the leaf of every event committed before the call (waiting where an older
/// transaction still runs, or another instance holds the lease). Returns how many leaves
/// this call appended.
pub async fn catch_up(pool: &PgPool) -> anyhow::Result<usize> {
    let target: i64 = sqlx::query_scalar("SELECT coalesce(max(global_position), 0) FROM events")
        .fetch_one(pool)
        .await?;
    let mut total = 0;
    loop {
        match run_batch(pool, BATCH_SIZE).await? {
            BuildOutcome::Appended(n) => total += n,
            BuildOutcome::Idle | BuildOutcome::Busy => {
                if !has_pending(pool, target).await? {
                    return Ok(total);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Whether committed events at or below `target` have no leaf yet.
async fn has_pending(pool: &PgPool, target: i64) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        r#"
SELECT EXISTS (
  SELECT 1 FROM events e, merkle_builder b
   WHERE e.global_position <= $1
     AND (e.transaction_id, e.global_position) > (b.last_transaction_id, b.last_position))"#,
    )
    .bind(target)
    .fetch_one(pool)
    .await
}

/// The worker's loop: append leaves as events commit, sign the heads that are due,
/// until `shutdown`. A batch in flight is finished, never abandoned.
pub async fn run(
    pool: PgPool,
    key: CheckpointKey,
    settings: TransparencySettings,
    shutdown: CancellationToken,
) {
    let mut failures: u32 = 0;
    let mut next_sign = Instant::now();
    while !shutdown.is_cancelled() {
        let pause = match run_batch(&pool, BATCH_SIZE).await {
            Ok(BuildOutcome::Appended(_)) => {
                failures = 0;
                Duration::ZERO
            }
            Ok(BuildOutcome::Idle | BuildOutcome::Busy) => {
                failures = 0;
                POLL_INTERVAL
            }
            Err(err) => {
                failures += 1;
                tracing::error!(
                    error = format!("{err:#}"),
                    failures,
                    "appending to the transparency log failed; retrying"
                );
                Duration::from_millis(200 * 2u64.pow(failures.min(5)))
            }
        };
        if Instant::now() >= next_sign {
            next_sign = Instant::now() + SIGN_CHECK_INTERVAL;
            match heads::sign_due(&pool, &key, &settings.origin, settings.head_every).await {
                Ok(signed) if signed.is_empty() => {}
                Ok(signed) => tracing::debug!(tenants = signed.len(), "signed tree heads"),
                Err(err) => {
                    tracing::warn!(error = format!("{err:#}"), "signing tree heads failed")
                }
            }
        }
        if pause.is_zero() {
            continue;
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(pause) => {}
        }
    }
    tracing::info!("transparency log builder stopped");
}
