//! The transparency log (docs/transparency.md): per tenant, an RFC 6962 / RFC 9162
//! Merkle tree over the tenant's events in commit order; signed tree heads in the C2SP
//! `tlog-checkpoint` / `signed-note` format with Ed25519; inclusion proofs (one event is
//! in the log, revealing no other event) and consistency proofs (the log only grew)
//! that a third party checks with the public key and nothing else.
//!
//! - builder.rs: appends every committed event as the next leaf of its tenant's tree, in
//!   the projectors' catch-up order, under a lease, one transaction per batch;
//! - heads.rs: signs tree heads, never one inconsistent with the previous;
//! - proofs.rs: inclusion and consistency proofs from the stored tree;
//! - hashes.rs: where the tree's hashes live in Postgres.
//!
//! The tree math (stored-hash layout, roots, proofs) is `tlog_tiles`, and the note
//! format `tlog_tiles::Checkpoint` + `signed_note`: Cloudflare's ports of Go's
//! `golang.org/x/mod/sumdb` (the Go checksum database's log). Nothing here re-derives
//! RFC 6962; the tests check what it produces against an implementation written from the
//! RFC (tests/tlog_verify.py).

pub mod builder;
pub mod cli;
pub mod hashes;
pub mod heads;
pub mod proofs;

use tlog_tiles::Hash;

/// The leaf data of an event: the UTF-8 bytes of its chain hash as stored, i.e. the text
/// `metadata->>'hash'` (64 lowercase hex characters for every event Chronicle wrote;
/// empty when absent). The text, not the 32 bytes it spells, so every stored row has
/// exactly one leaf whatever it holds.
pub fn leaf_data(chain_hash: Option<&str>) -> &[u8] {
    chain_hash.unwrap_or_default().as_bytes()
}

/// RFC 6962 leaf hash: SHA-256(0x00 || leaf data).
pub fn leaf_hash(chain_hash: Option<&str>) -> Hash {
    tlog_tiles::record_hash(leaf_data(chain_hash))
}

/// A tenant's log origin, which is also the key name of its signatures:
/// `<TRANSPARENCY_LOG_ORIGIN>/tenants/<tenant id>`.
pub fn origin(prefix: &str, tenant: uuid::Uuid) -> String {
    format!("{prefix}/tenants/{}", tenant.hyphenated())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    /// The leaf hash docs/transparency.md shows for the audit worked example's event.
    #[test]
    fn leaf_hash_is_sha256_of_zero_byte_and_the_hash_text() {
        let text = "5d4a46fec6d6198a9825ecd02c2359b3f4982fcca811f4554f9df77d0a4cc9f3";
        let mut expected = Sha256::new();
        expected.update([0u8]);
        expected.update(text.as_bytes());
        let expected: [u8; 32] = expected.finalize().into();
        assert_eq!(leaf_hash(Some(text)).0, expected);
        let docs = include_str!("../../docs/transparency.md");
        assert!(
            docs.contains(&hex::encode(expected)),
            "docs/transparency.md shows {}",
            hex::encode(expected)
        );
        assert_eq!(leaf_data(None), b"");
    }

    #[test]
    fn origins_name_the_tenant() {
        let tenant = uuid::Uuid::parse_str("01890a5d-ac96-774b-bcce-b302099a8057").unwrap();
        assert_eq!(
            origin("files.example.com", tenant),
            "files.example.com/tenants/01890a5d-ac96-774b-bcce-b302099a8057"
        );
    }
}
