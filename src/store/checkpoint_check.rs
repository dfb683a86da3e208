//! Checking the newest signed checkpoint of each tenant against the log: its digest
//! must match the heads it stored, its signature must verify with the trusted key, and
//! every head it signed must still be in the log with the same hash — a deleted tail
//! shows up here and nowhere else.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::checkpoint::{digest, heads_at, timestamp_text};
use super::verify::{BreakKind, ChainBreak};

/// The newest checkpoint of a tenant, as the verify report shows it (auditors may keep
/// these outside the database to detect a later rewrite of the checkpoints themselves).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CheckpointSeen {
    pub id: i64,
    pub tenant_id: Uuid,
    pub taken_at: String,
    pub streams: i64,
    pub digest: String,
    pub signature: String,
    pub public_key: String,
}

/// Checks the newest checkpoint of every tenant in scope. `trusted`: the key
/// checkpoints must be signed with; `None` checks each signature against the public
/// key stored beside it (catches a damaged signature, not a re-signed checkpoint —
/// used only when the configured key was generated for this process).
pub async fn check_newest(
    conn: &mut PgConnection,
    tenant: Option<Uuid>,
    trusted: Option<&VerifyingKey>,
) -> Result<(Vec<CheckpointSeen>, Vec<ChainBreak>), sqlx::Error> {
    let rows = sqlx::query(
        r#"
SELECT DISTINCT ON (tenant_id) id, tenant_id, taken_at, streams, digest, signature, public_key
  FROM checkpoints WHERE $1::uuid IS NULL OR tenant_id = $1
 ORDER BY tenant_id, id DESC"#,
    )
    .bind(tenant)
    .fetch_all(&mut *conn)
    .await?;
    let mut seen = Vec::new();
    let mut breaks = Vec::new();
    for row in rows {
        let c = CheckpointSeen {
            id: row.get("id"),
            tenant_id: row.get("tenant_id"),
            taken_at: timestamp_text(row.get("taken_at")),
            streams: row.get("streams"),
            digest: row.get("digest"),
            signature: row.get("signature"),
            public_key: row.get("public_key"),
        };
        let heads = heads_at(conn, c.tenant_id, c.id).await?;
        let recomputed = hex::encode(digest(c.tenant_id, &c.taken_at, &heads));
        if recomputed != c.digest {
            breaks.push(checkpoint_break(
                &c,
                BreakKind::CheckpointDigestMismatch,
                recomputed,
                c.digest.clone(),
            ));
        }
        if let Some((expected, found)) = signature_problem(&c, trusted) {
            breaks.push(checkpoint_break(
                &c,
                BreakKind::CheckpointSignatureInvalid,
                expected,
                found,
            ));
        }
        breaks.extend(missing_heads(conn, &c).await?);
        seen.push(c);
    }
    Ok((seen, breaks))
}

fn checkpoint_break(
    c: &CheckpointSeen,
    problem: BreakKind,
    expected: String,
    found: String,
) -> ChainBreak {
    ChainBreak {
        tenant_id: c.tenant_id.to_string(),
        aggregate_type: "checkpoint".into(),
        aggregate_id: c.id.to_string(),
        sequence: 0,
        problem,
        expected,
        found,
    }
}

/// `(expected, found)` when the signature does not verify.
fn signature_problem(
    c: &CheckpointSeen,
    trusted: Option<&VerifyingKey>,
) -> Option<(String, String)> {
    let stored_key = STANDARD
        .decode(&c.public_key)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .and_then(|b| VerifyingKey::from_bytes(&b).ok());
    let key = match (trusted, stored_key) {
        (Some(t), _) => *t,
        (None, Some(k)) => k,
        (None, None) => return Some(("a valid public key".into(), c.public_key.clone())),
    };
    let expected = format!("a valid signature by {}", STANDARD.encode(key.as_bytes()));
    let Some(signature) = STANDARD
        .decode(&c.signature)
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .map(|b| Signature::from_bytes(&b))
    else {
        return Some((expected, c.signature.clone()));
    };
    let Ok(digest) = hex::decode(&c.digest) else {
        return Some((expected, c.signature.clone()));
    };
    key.verify(&digest, &signature)
        .is_err()
        .then(|| (expected, c.signature.clone()))
}

/// Heads the checkpoint signed that are gone (truncated tail) or hold another event
/// (the tail was replaced).
async fn missing_heads(
    conn: &mut PgConnection,
    c: &CheckpointSeen,
) -> Result<Vec<ChainBreak>, sqlx::Error> {
    let rows = sqlx::query(
        r#"
WITH heads AS (
    SELECT DISTINCT ON (aggregate_type, aggregate_id) aggregate_type, aggregate_id,
           last_sequence, last_hash
      FROM checkpoint_heads WHERE tenant_id = $1 AND checkpoint_id <= $2
     ORDER BY aggregate_type, aggregate_id, checkpoint_id DESC)
SELECT h.aggregate_type, h.aggregate_id, h.last_sequence, h.last_hash,
       e.metadata->>'hash' AS found_hash,
       (SELECT max(x.sequence) FROM events x
         WHERE x.tenant_id = $1 AND x.aggregate_type = h.aggregate_type
           AND x.aggregate_id = h.aggregate_id) AS stream_end
  FROM heads h
  LEFT JOIN events e ON e.tenant_id = $1 AND e.aggregate_type = h.aggregate_type
                    AND e.aggregate_id = h.aggregate_id AND e.sequence = h.last_sequence
 WHERE e.metadata->>'hash' IS DISTINCT FROM h.last_hash
 ORDER BY h.aggregate_type, h.aggregate_id"#,
    )
    .bind(c.tenant_id)
    .bind(c.id)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let sequence: i64 = r.get("last_sequence");
            let expected_hash: String = r.get("last_hash");
            let found_hash: Option<String> = r.get("found_hash");
            let stream_end: Option<i64> = r.get("stream_end");
            let (problem, found) = match found_hash {
                None => (
                    BreakKind::TruncatedTail,
                    match stream_end {
                        Some(end) => format!("stream ends at sequence {end}"),
                        None => "stream is gone".to_string(),
                    },
                ),
                Some(hash) => (BreakKind::CheckpointHeadMismatch, hash),
            };
            ChainBreak {
                tenant_id: c.tenant_id.to_string(),
                aggregate_type: r.get("aggregate_type"),
                aggregate_id: r.get("aggregate_id"),
                sequence,
                problem,
                expected: format!("{expected_hash} (checkpoint {})", c.id),
                found,
            }
        })
        .collect())
}
