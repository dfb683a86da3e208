//! Signed checkpoints: per tenant, the head (last sequence and hash) of every stream,
//! a SHA-256 digest over them in a documented canonical form, and an Ed25519 signature
//! of that digest. A per-stream hash chain cannot show that a stream's *tail* was
//! deleted; a checkpoint can: every head it signed must still be in the log. Since
//! version 2 each checkpoint also signs its predecessor's digest and a counter, so the
//! checkpoints form a chain of their own and cannot be deleted or reordered unnoticed.
//!
//! The encodings are specified in docs/audit.md for auditors who do not run our code;
//! `tests::worked_example*` pin them. Taking checkpoints is checkpointer.rs; checking
//! them is checkpoint_check.rs.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use futures::TryStreamExt;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, Row};
use uuid::Uuid;

const DOMAIN_TAG_V1: &[u8] = b"chronicle-checkpoint-v1\n";
const DOMAIN_TAG_V2: &[u8] = b"chronicle-checkpoint-v2\n";

/// `prev_digest` of a tenant's first checkpoint when no older one exists.
pub const GENESIS_DIGEST: &str = super::hash::GENESIS_HASH;

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

/// Where a version 2 checkpoint sits in its tenant's chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainLink<'a> {
    /// 1 for the tenant's first version 2 checkpoint, then +1 each.
    pub counter: i64,
    /// The digest (hex) of the tenant's previous checkpoint, or [`GENESIS_DIGEST`].
    pub prev_digest: &'a str,
}

/// Feeds the canonical encoding (after the domain tag) to `out`: as
/// `<byte length>:<bytes>\n` fields the tenant, `taken_at`, for version 2 the counter and
/// the previous digest, the number of heads, and for each head (sorted by aggregate
/// type, then id, by bytes) its type, id, sequence, hash. `heads` must already be sorted.
pub fn encode(
    tenant: Uuid,
    taken_at: &str,
    link: Option<ChainLink<'_>>,
    heads: &[Head],
    mut out: impl FnMut(&[u8]),
) {
    let mut field = |text: &str| {
        out(text.len().to_string().as_bytes());
        out(b":");
        out(text.as_bytes());
        out(b"\n");
    };
    field(&tenant.hyphenated().to_string());
    field(taken_at);
    if let Some(link) = link {
        field(&link.counter.to_string());
        field(link.prev_digest);
    }
    field(&heads.len().to_string());
    for h in heads {
        field(&h.aggregate_type);
        field(&h.aggregate_id);
        field(&h.sequence.to_string());
        field(&h.hash);
    }
}

/// SHA-256 of the canonical encoding (32 bytes; what is signed): version 2 with a
/// `link`, version 1 (legacy checkpoints) without.
pub fn digest(
    tenant: Uuid,
    taken_at: &str,
    link: Option<ChainLink<'_>>,
    heads: &[Head],
) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(if link.is_some() {
        DOMAIN_TAG_V2
    } else {
        DOMAIN_TAG_V1
    });
    encode(tenant, taken_at, link, heads, |bytes| hasher.update(bytes));
    hasher.finalize().into()
}

/// Sorts heads into digest order (byte order, like `COLLATE "C"`).
pub fn sort_heads(heads: &mut [Head]) {
    heads.sort_by(|a, b| {
        (a.aggregate_type.as_bytes(), a.aggregate_id.as_bytes())
            .cmp(&(b.aggregate_type.as_bytes(), b.aggregate_id.as_bytes()))
    });
}

/// One row of `checkpoints`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StoredCheckpoint {
    pub id: i64,
    pub tenant_id: Uuid,
    pub taken_at: String,
    pub streams: i64,
    /// 1: legacy (not chained), 2: chained.
    pub format: i16,
    pub counter: Option<i64>,
    pub prev_digest: Option<String>,
    pub digest: String,
    pub signature: String,
    pub public_key: String,
}

/// The columns `StoredCheckpoint::read` expects.
pub const CHECKPOINT_COLUMNS: &str =
    "id, tenant_id, taken_at, streams, format, counter, prev_digest, digest, signature, public_key";

impl StoredCheckpoint {
    pub fn read(row: &sqlx::postgres::PgRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            tenant_id: row.try_get("tenant_id")?,
            taken_at: timestamp_text(row.try_get("taken_at")?),
            streams: row.try_get("streams")?,
            format: row.try_get("format")?,
            counter: row.try_get("counter")?,
            prev_digest: row.try_get("prev_digest")?,
            digest: row.try_get("digest")?,
            signature: row.try_get("signature")?,
            public_key: row.try_get("public_key")?,
        })
    }

    /// Its place in the chain (`None` for a legacy checkpoint).
    pub fn link(&self) -> Option<ChainLink<'_>> {
        match (self.format, self.counter, &self.prev_digest) {
            (2, Some(counter), Some(prev)) => Some(ChainLink {
                counter,
                prev_digest: prev,
            }),
            _ => None,
        }
    }

    /// The digest its heads give (hex).
    pub fn recompute_digest(&self, heads: &[Head]) -> String {
        hex::encode(digest(self.tenant_id, &self.taken_at, self.link(), heads))
    }

    /// `(expected, found)` when the signature does not verify with one of `trusted`
    /// (`None`: with the key stored beside it — development only).
    pub fn signature_problem(&self, trusted: Option<&[VerifyingKey]>) -> Option<(String, String)> {
        let stored = crate::config::parse_public_key(&self.public_key);
        let keys: Vec<VerifyingKey> = match trusted {
            Some(keys) => keys.to_vec(),
            None => stored.into_iter().collect(),
        };
        let expected = match trusted {
            Some(_) => "a valid signature by a trusted key".to_string(),
            None => format!("a valid signature by {}", self.public_key),
        };
        let signature = STANDARD
            .decode(&self.signature)
            .ok()
            .and_then(|b| <[u8; 64]>::try_from(b).ok())
            .map(|b| Signature::from_bytes(&b));
        let digest = hex::decode(&self.digest).ok();
        let ok = match (signature, digest) {
            (Some(sig), Some(d)) => keys.iter().any(|k| k.verify(&d, &sig).is_ok()),
            _ => false,
        };
        (!ok).then(|| {
            (
                expected,
                format!("{} (key {})", self.signature, self.public_key),
            )
        })
    }
}

/// The tenant's newest checkpoint.
pub async fn newest(
    conn: &mut PgConnection,
    tenant: Uuid,
) -> Result<Option<StoredCheckpoint>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {CHECKPOINT_COLUMNS} FROM checkpoints WHERE tenant_id = $1 ORDER BY id DESC LIMIT 1"
    ))
    .bind(tenant)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(StoredCheckpoint::read).transpose()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CheckpointKey;
    use ed25519_dalek::Signer;

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

    /// Checks that docs/audit.md shows an example's bytes, digest, key and signature.
    fn documented(link: Option<ChainLink<'_>>) -> String {
        let (tenant, at, heads) = example();
        let mut bytes = if link.is_some() {
            DOMAIN_TAG_V2
        } else {
            DOMAIN_TAG_V1
        }
        .to_vec();
        encode(tenant, &at, link, &heads, |b| bytes.extend_from_slice(b));
        let docs = include_str!("../../docs/audit.md");
        let shown = String::from_utf8(bytes).unwrap().replace('\n', "\\n");
        assert!(
            docs.contains(&shown),
            "docs/audit.md must show the bytes {shown}"
        );
        let digest = digest(tenant, &at, link, &heads);
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
        hex::encode(digest)
    }

    /// The legacy (version 1) example in docs/audit.md.
    #[test]
    fn worked_example() {
        documented(None);
    }

    /// The version 2 example: the first chained checkpoint after the legacy one.
    #[test]
    fn worked_example_v2() {
        let legacy = documented(None);
        let v2 = documented(Some(ChainLink {
            counter: 1,
            prev_digest: &legacy,
        }));
        assert_ne!(v2, legacy);
    }

    #[test]
    fn every_head_field_and_the_order_matter() {
        let (tenant, at, heads) = example();
        let link = Some(ChainLink {
            counter: 2,
            prev_digest: GENESIS_DIGEST,
        });
        let base = digest(tenant, &at, link, &heads);
        let mut variants = Vec::new();
        for i in 0..4 {
            let mut h = heads.clone();
            match i {
                0 => h[1].sequence = 4,
                1 => h[1].hash = "cd".repeat(32),
                2 => h.truncate(1),
                _ => h.swap(0, 1),
            }
            variants.push(digest(tenant, &at, link, &h));
        }
        variants.push(digest(Uuid::nil(), &at, link, &heads));
        variants.push(digest(tenant, "2026-11-25T14:30:00.000001Z", link, &heads));
        variants.push(digest(tenant, &at, None, &heads));
        let other = "12".repeat(32);
        for other_link in [
            ChainLink {
                counter: 3,
                prev_digest: GENESIS_DIGEST,
            },
            ChainLink {
                counter: 2,
                prev_digest: &other,
            },
        ] {
            variants.push(digest(tenant, &at, Some(other_link), &heads));
        }
        for v in variants {
            assert_ne!(v, base);
        }
    }

    #[test]
    fn signatures_verify_only_for_the_signed_digest_and_a_trusted_key() {
        let (tenant, at, heads) = example();
        let key = CheckpointKey::from_seed([3u8; 32]);
        let d = digest(tenant, &at, None, &heads);
        let mut c = StoredCheckpoint {
            id: 1,
            tenant_id: tenant,
            taken_at: at.clone(),
            streams: 2,
            format: 1,
            counter: None,
            prev_digest: None,
            digest: hex::encode(d),
            signature: STANDARD.encode(key.signing().sign(&d).to_bytes()),
            public_key: key.public_base64(),
        };
        assert_eq!(c.recompute_digest(&heads), c.digest);
        let trusted = [key.verifying()];
        assert_eq!(c.signature_problem(Some(&trusted)), None);
        assert_eq!(c.signature_problem(None), None);
        let stranger = CheckpointKey::from_seed([4u8; 32]);
        assert!(c.signature_problem(Some(&[stranger.verifying()])).is_some());
        // Re-signed by the stranger, who also stored its own key beside it: only the
        // development fallback (the stored key) is fooled.
        c.signature = STANDARD.encode(stranger.signing().sign(&d).to_bytes());
        c.public_key = stranger.public_base64();
        assert!(c.signature_problem(Some(&trusted)).is_some());
        assert_eq!(c.signature_problem(None), None);
        let mut other = d;
        other[0] ^= 1;
        c.digest = hex::encode(other);
        assert!(c.signature_problem(None).is_some());
    }

    #[test]
    fn timestamps_have_microseconds_and_z() {
        let at = DateTime::from_timestamp_micros(1_764_081_000_000_001).unwrap();
        assert_eq!(timestamp_text(at), "2025-11-25T14:30:00.000001Z");
    }
}
