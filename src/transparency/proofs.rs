//! Inclusion and consistency proofs from the stored tree, relative to signed tree heads,
//! in the JSON shape the API and the CLI both hand out (docs/transparency.md). Hashes
//! are base64, like the root line of a checkpoint.
//!
//! An inclusion proof names the one event it proves and carries subtree hashes only: it
//! reveals no other event. Every proof is for a size that has a signed head, and carries
//! that head, so the verifier needs nothing but the public key.

use serde::Serialize;
use sqlx::{PgConnection, Row};
use tlog_tiles::Hash;
use uuid::Uuid;

use super::hashes::{TreeError, compute};
use super::heads::{self, SignedHead};
use crate::error::AppError;

/// Why no proof can be given.
#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    #[error("no event at that global_position in this tenant's log")]
    NoSuchEvent,
    #[error("no signed tree head yet; retry in a few seconds")]
    NoSignedHead,
    #[error("no signed tree head of size {0}")]
    NoHeadOfSize(u64),
    #[error("the event is not yet covered by a signed tree head; retry in a few seconds")]
    NotYetSigned,
    #[error("the event is leaf {leaf}, logged after tree size {size}")]
    LoggedLater { leaf: u64, size: u64 },
    #[error("{0}")]
    BadRange(String),
    #[error(transparent)]
    Tree(#[from] TreeError),
}

impl From<sqlx::Error> for ProofError {
    fn from(err: sqlx::Error) -> Self {
        ProofError::Tree(TreeError::Database(err))
    }
}

impl From<ProofError> for AppError {
    fn from(err: ProofError) -> Self {
        match err {
            ProofError::NoSuchEvent
            | ProofError::NoSignedHead
            | ProofError::NoHeadOfSize(_)
            | ProofError::NotYetSigned => AppError::NotFound(err.to_string()),
            ProofError::LoggedLater { .. } | ProofError::BadRange(_) => {
                AppError::Validation(err.to_string())
            }
            ProofError::Tree(TreeError::Database(e)) => AppError::from(e),
            ProofError::Tree(e) => AppError::Internal(anyhow::Error::new(e)),
        }
    }
}

/// A signed tree head as handed out.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TreeHead {
    pub tree_size: u64,
    /// base64 of the 32-byte RFC 6962 root.
    pub root_hash: String,
    /// The C2SP signed note (tlog-checkpoint text, a blank line, the signature line);
    /// `null` only for the first tree of a consistency proof whose size was never signed.
    pub checkpoint: Option<String>,
}

impl From<SignedHead> for TreeHead {
    fn from(h: SignedHead) -> Self {
        TreeHead {
            tree_size: h.tree_size,
            root_hash: h.root.to_string(),
            checkpoint: Some(h.note),
        }
    }
}

/// The event an inclusion proof is about, with what its leaf is made of.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ProvenEvent {
    pub global_position: i64,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    /// The event's chain hash as stored (`metadata.hash`): the leaf data.
    pub hash: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct InclusionProof {
    pub tenant_id: Uuid,
    /// The event as the log holds it now; `null` if it was deleted after it was logged.
    pub event: Option<ProvenEvent>,
    /// The event's index in the tenant's tree (0-based, commit order).
    pub leaf_index: u64,
    /// base64 of the leaf hash the tree holds: SHA-256(0x00 || the event's chain hash as
    /// UTF-8) when it was logged. Check it against the event you hold.
    pub leaf_hash: String,
    /// The signed head the proof leads to.
    pub tree_head: TreeHead,
    /// RFC 9162 §2.1.3 audit path, from the leaf's sibling up, base64 each.
    pub inclusion_path: Vec<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ConsistencyProof {
    pub tenant_id: Uuid,
    /// The older tree (the head an auditor kept); its root as the stored tree gives it.
    pub first: TreeHead,
    /// The newer tree, always a signed head.
    pub second: TreeHead,
    /// RFC 9162 §2.1.4 consistency path, base64 each (empty when the sizes are equal).
    pub consistency_path: Vec<String>,
}

fn base64_all(hashes: Vec<Hash>) -> Vec<String> {
    hashes.into_iter().map(|h| h.to_string()).collect()
}

/// The tenant's signed head of `size`, or its newest.
pub async fn tree_head(
    conn: &mut PgConnection,
    tenant: Uuid,
    size: Option<u64>,
) -> Result<SignedHead, ProofError> {
    match size {
        Some(0) => Err(ProofError::BadRange("tree_size must be at least 1".into())),
        Some(s) => heads::of_size(conn, tenant, s)
            .await?
            .ok_or(ProofError::NoHeadOfSize(s)),
        None => heads::newest(conn, tenant)
            .await?
            .ok_or(ProofError::NoSignedHead),
    }
}

/// Proves that the tenant's event at `global_position` is leaf `i` of the signed tree
/// of `tree_size` (default: the newest signed head). The proof comes from the tree, so an
/// event deleted from the log after it was logged still has one (with `event: null`):
/// whoever holds the event can show it was there.
pub async fn prove_inclusion(
    conn: &mut PgConnection,
    tenant: Uuid,
    global_position: i64,
    tree_size: Option<u64>,
) -> Result<InclusionProof, ProofError> {
    let leaf: Option<i64> = sqlx::query_scalar(
        "SELECT leaf_index FROM merkle_leaves WHERE tenant_id = $1 AND global_position = $2",
    )
    .bind(tenant)
    .bind(global_position)
    .fetch_optional(&mut *conn)
    .await?;
    let row = sqlx::query(
        "SELECT aggregate_type, aggregate_id, sequence, metadata->>'hash' AS hash
           FROM events WHERE tenant_id = $1 AND global_position = $2",
    )
    .bind(tenant)
    .bind(global_position)
    .fetch_optional(&mut *conn)
    .await?;
    let event = row
        .map(|row| -> Result<ProvenEvent, sqlx::Error> {
            Ok(ProvenEvent {
                global_position,
                aggregate_type: row.try_get("aggregate_type")?,
                aggregate_id: row.try_get("aggregate_id")?,
                sequence: row.try_get("sequence")?,
                hash: row.try_get("hash")?,
            })
        })
        .transpose()?;
    let leaf = match (leaf, &event) {
        (Some(leaf), _) => leaf as u64,
        (None, None) => return Err(ProofError::NoSuchEvent),
        (None, Some(_)) => return Err(ProofError::NotYetSigned),
    };
    let head = tree_head(conn, tenant, tree_size).await?;
    if leaf >= head.tree_size {
        return Err(match tree_size {
            Some(size) => ProofError::LoggedLater { leaf, size },
            None => ProofError::NotYetSigned,
        });
    }
    let size = head.tree_size;
    let (path, logged) = compute(conn, tenant, |r| {
        let path = tlog_tiles::prove_record(size, leaf, &r)?;
        let logged = r.read(&[tlog_tiles::stored_hash_index(0, leaf)])?[0];
        Ok((path, logged))
    })
    .await?;
    let now = event.as_ref().map(|e| super::leaf_hash(e.hash.as_deref()));
    if now != Some(logged) {
        // Handed out all the same: the auditor's check against the event they hold
        // shows it, which is the finding.
        tracing::error!(
            tenant = %tenant,
            global_position,
            leaf,
            deleted = event.is_none(),
            "an event was deleted or its hash changed after it was logged"
        );
    }
    Ok(InclusionProof {
        tenant_id: tenant,
        event,
        leaf_index: leaf,
        leaf_hash: logged.to_string(),
        tree_head: head.into(),
        inclusion_path: base64_all(path),
    })
}

/// Proves that the tenant's tree of `first` leaves is a prefix of its signed tree of
/// `second` leaves (default: the newest signed head).
pub async fn prove_consistency(
    conn: &mut PgConnection,
    tenant: Uuid,
    first: u64,
    second: Option<u64>,
) -> Result<ConsistencyProof, ProofError> {
    let head = tree_head(conn, tenant, second).await?;
    let size = head.tree_size;
    if first == 0 || first > size {
        return Err(ProofError::BadRange(format!(
            "from must be between 1 and the second tree's size ({size})"
        )));
    }
    let first_root = compute(conn, tenant, |r| tlog_tiles::tree_hash(first, &r)).await?;
    let first_head = heads::of_size(conn, tenant, first).await?;
    let path = compute(conn, tenant, |r| tlog_tiles::prove_tree(size, first, &r)).await?;
    Ok(ConsistencyProof {
        tenant_id: tenant,
        first: TreeHead {
            tree_size: first,
            root_hash: first_root.to_string(),
            checkpoint: first_head.map(|h| h.note),
        },
        second: head.into(),
        consistency_path: base64_all(path),
    })
}
