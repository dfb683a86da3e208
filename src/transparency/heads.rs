//! Signed tree heads: a C2SP `tlog-checkpoint` (origin, tree size, base64 root) signed
//! as a C2SP `signed-note` with Ed25519 by the checkpoint key, under the key name = the
//! tenant's origin (the spec's recommendation). The same key signs chain checkpoints
//! (src/store/checkpoint.rs) over 32-byte digests; a note is always longer than 32
//! bytes, so neither kind of signed message can pass for the other.
//!
//! A log must never sign a head inconsistent with one it signed before (tlog-checkpoint):
//! before signing, the root is recomputed from the stored hashes and a consistency proof
//! from the previous signed head is built and checked. A tree that fails either is not
//! signed, and an error is logged, every round, until someone looks.

use std::time::Duration;

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sqlx::{PgConnection, PgPool, Row};
use tlog_tiles::{Checkpoint, Hash};
use uuid::Uuid;

use super::hashes::compute;
use super::{builder, origin};
use crate::config::CheckpointKey;

/// The signed-note signature algorithm byte of Ed25519.
const ALG_ED25519: u8 = 0x01;

/// The checkpoint key as a signed-note signer for one tenant's log.
pub struct LogSigner {
    name: String,
    id: u32,
    key: SigningKey,
}

impl LogSigner {
    pub fn new(prefix: &str, tenant: Uuid, key: &CheckpointKey) -> Self {
        let name = origin(prefix, tenant);
        let id = key_id(&name, &key.verifying());
        Self {
            name,
            id,
            key: key.signing().clone(),
        }
    }
}

impl signed_note::Signer for LogSigner {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.id
    }
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, ed25519_dalek::SignatureError> {
        Ok(self.key.sign(msg).to_bytes().to_vec())
    }
}

/// The signed-note key id: the first 4 bytes of SHA-256(name || "\n" || 0x01 || key).
fn key_id(name: &str, key: &VerifyingKey) -> u32 {
    let mut encoded = vec![ALG_ED25519];
    encoded.extend_from_slice(key.as_bytes());
    signed_note::key_id(name, &encoded)
}

/// The verifier key auditors pin for one tenant's log: `<origin>+<key id hex>+<base64(0x01
/// || public key)>`, the signed-note `vkey` format Go's `note.NewVerifier` reads.
pub fn verifier_key(prefix: &str, tenant: Uuid, key: &VerifyingKey) -> String {
    signed_note::new_ed25519_verifier_key(&origin(prefix, tenant), key)
}

/// The signed note of a tree head.
pub fn sign(signer: &LogSigner, size: u64, root: Hash) -> anyhow::Result<String> {
    let text = Checkpoint::new(&signer.name, size, root, "")
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .to_bytes();
    let mut note = signed_note::Note::new(&text, &[]).map_err(|e| anyhow::anyhow!("{e}"))?;
    note.add_sigs(&[signer])
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(String::from_utf8(note.to_bytes())?)
}

/// A stored signed tree head.
#[derive(Debug, Clone)]
pub struct SignedHead {
    pub tenant_id: Uuid,
    pub tree_size: u64,
    pub root: Hash,
    /// The whole signed note, exactly as handed out.
    pub note: String,
}

fn hash_of(bytes: &[u8]) -> Result<Hash, sqlx::Error> {
    let array: [u8; 32] = bytes
        .try_into()
        .map_err(|_| sqlx::Error::Decode("a stored root is not 32 bytes".into()))?;
    Ok(Hash(array))
}

fn head_of(row: &sqlx::postgres::PgRow) -> Result<SignedHead, sqlx::Error> {
    Ok(SignedHead {
        tenant_id: row.try_get("tenant_id")?,
        tree_size: row.try_get::<i64, _>("tree_size")? as u64,
        root: hash_of(row.try_get("root")?)?,
        note: row.try_get("note")?,
    })
}

/// The tenant's newest signed head.
pub async fn newest(
    conn: &mut PgConnection,
    tenant: Uuid,
) -> Result<Option<SignedHead>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT tenant_id, tree_size, root, note FROM merkle_tree_heads
          WHERE tenant_id = $1 ORDER BY tree_size DESC LIMIT 1",
    )
    .bind(tenant)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(head_of).transpose()
}

/// The tenant's signed head of exactly `size` leaves.
pub async fn of_size(
    conn: &mut PgConnection,
    tenant: Uuid,
    size: u64,
) -> Result<Option<SignedHead>, sqlx::Error> {
    let Ok(size) = i64::try_from(size) else {
        return Ok(None);
    };
    let row = sqlx::query(
        "SELECT tenant_id, tree_size, root, note FROM merkle_tree_heads
          WHERE tenant_id = $1 AND tree_size = $2",
    )
    .bind(tenant)
    .bind(size)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(head_of).transpose()
}

/// Signs a new head for every tree that grew since its last signed head, if that head is
/// at least `min_age` old (or there is none). Runs under the builder's lease; returns the
/// heads signed (none when another instance holds the lease).
pub async fn sign_due(
    pool: &PgPool,
    key: &CheckpointKey,
    prefix: &str,
    min_age: Duration,
) -> anyhow::Result<Vec<SignedHead>> {
    let mut tx = pool.begin().await?;
    if builder::lease(&mut tx).await?.is_none() {
        return Ok(Vec::new());
    }
    let due = sqlx::query(
        "SELECT tenant_id, size, root, signed_size FROM merkle_trees
          WHERE size > signed_size
            AND (signed_at IS NULL OR signed_at <= now() - make_interval(secs => $1))
          ORDER BY tenant_id LIMIT 1000",
    )
    .bind(min_age.as_secs_f64())
    .fetch_all(&mut *tx)
    .await?;
    let mut signed = Vec::new();
    for row in &due {
        let tenant: Uuid = row.try_get("tenant_id")?;
        let size = row.try_get::<i64, _>("size")? as u64;
        let root = hash_of(row.try_get("root")?)?;
        let previous = row.try_get::<i64, _>("signed_size")? as u64;
        match checked_root(&mut tx, tenant, size, root, previous).await? {
            Ok(()) => {
                let head = sign(&LogSigner::new(prefix, tenant, key), size, root)?;
                store(&mut tx, tenant, size, root, &head).await?;
                signed.push(SignedHead {
                    tenant_id: tenant,
                    tree_size: size,
                    root,
                    note: head,
                });
            }
            Err(reason) => tracing::error!(
                tenant = %tenant,
                tree_size = size,
                signed_size = previous,
                reason,
                "refusing to sign a tree head: the stored Merkle tree contradicts itself or \
                 the last signed head (damaged or tampered tables; see docs/transparency.md)"
            ),
        }
    }
    tx.commit().await?;
    Ok(signed)
}

/// `Ok(Ok(()))` when `root` is what the stored hashes give for `size` and the tree of
/// `size` extends the signed head of `previous` (a consistency proof checks).
async fn checked_root(
    conn: &mut PgConnection,
    tenant: Uuid,
    size: u64,
    root: Hash,
    previous: u64,
) -> anyhow::Result<Result<(), &'static str>> {
    let stored = compute(conn, tenant, |r| tlog_tiles::tree_hash(size, &r)).await;
    match stored {
        Ok(h) if h == root => {}
        Ok(_) => return Ok(Err("the stored root differs from the stored hashes")),
        Err(super::hashes::TreeError::Tree(_)) => return Ok(Err("stored hashes are missing")),
        Err(e) => return Err(e.into()),
    }
    if previous == 0 {
        return Ok(Ok(()));
    }
    let Some(last) = of_size(conn, tenant, previous).await? else {
        return Ok(Err("the last signed head is gone"));
    };
    let proof = match compute(conn, tenant, |r| tlog_tiles::prove_tree(size, previous, &r)).await {
        Ok(p) => p,
        Err(super::hashes::TreeError::Tree(_)) => return Ok(Err("stored hashes are missing")),
        Err(e) => return Err(e.into()),
    };
    Ok(
        tlog_tiles::check_tree(&proof, size, root, previous, last.root)
            .map_err(|_| "the tree does not extend the last signed head"),
    )
}

async fn store(
    conn: &mut PgConnection,
    tenant: Uuid,
    size: u64,
    root: Hash,
    note: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO merkle_tree_heads (tenant_id, tree_size, root, note, signed_at)
         VALUES ($1, $2, $3, $4, now())",
    )
    .bind(tenant)
    .bind(size as i64)
    .bind(root.0.as_slice())
    .bind(note)
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE merkle_trees SET signed_size = $2, signed_at = now() WHERE tenant_id = $1")
        .bind(tenant)
        .bind(size as i64)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use signed_note::{Note, StandardVerifier, VerifierList};

    fn tenant() -> Uuid {
        Uuid::parse_str("01890a5d-ac96-774b-bcce-b302099a8057").unwrap()
    }

    /// The example of docs/transparency.md: the example seed (32 bytes 0x07), one leaf
    /// (the audit worked example's event), its note and vkey.
    #[test]
    fn worked_example_and_its_signature_verifies_with_the_vkey_only() {
        let key = CheckpointKey::from_seed([7u8; 32]);
        let root = super::super::leaf_hash(Some(
            "5d4a46fec6d6198a9825ecd02c2359b3f4982fcca811f4554f9df77d0a4cc9f3",
        ));
        let note = sign(&LogSigner::new("chronicle", tenant(), &key), 1, root).unwrap();
        let vkey = verifier_key("chronicle", tenant(), &key.verifying());
        let docs = include_str!("../../docs/transparency.md");
        assert!(
            docs.contains(&note),
            "docs/transparency.md shows the note:\n{note}"
        );
        assert!(
            docs.contains(&vkey),
            "docs/transparency.md shows the vkey {vkey}"
        );

        let verifiers = VerifierList::new(vec![Box::new(StandardVerifier::new(&vkey).unwrap())]);
        let parsed = Note::from_bytes(note.as_bytes()).unwrap();
        let (verified, _) = parsed.verify(&verifiers).unwrap();
        assert_eq!(verified.len(), 1);
        let head = Checkpoint::from_bytes(parsed.text()).unwrap();
        assert_eq!((head.size(), *head.hash()), (1, root));

        let mut forged = note.replacen("\n1\n", "\n2\n", 1);
        assert!(
            Note::from_bytes(forged.as_bytes())
                .unwrap()
                .verify(&verifiers)
                .is_err()
        );
        forged = note.clone();
        let stranger = verifier_key(
            "chronicle",
            tenant(),
            &CheckpointKey::from_seed([8; 32]).verifying(),
        );
        let others = VerifierList::new(vec![Box::new(StandardVerifier::new(&stranger).unwrap())]);
        assert!(
            Note::from_bytes(forged.as_bytes())
                .unwrap()
                .verify(&others)
                .is_err()
        );
    }
}
