//! Signed listing cursors (`GET /v1/files`, `GET /v1/audit`): a position the client
//! hands back but cannot forge, so a tampered cursor is refused (400) instead of
//! silently paging from wherever it points.
//!
//! Format (version 2): base64url of `text ‖ tag`, where `tag` is the leftmost 12 bytes
//! (96 bits) of HMAC-SHA256 over `tenant id (16 bytes) ‖ text`, keyed by 32 bytes that
//! HKDF-SHA256 derives from `JWT_SECRET` (salt and info below: a key of its own, never
//! the token signing key). Binding the tenant means one tenant's cursor is refused by
//! another. Version 1 keyed a hand-written HMAC with SHA-256(label ‖ secret); its
//! cursors no longer verify, so a client holding one across the upgrade gets `400
//! invalid cursor` once and starts again from the first page (cursors are positions in
//! a listing, never stored state). RustCrypto's `hmac` compares tags in constant time.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use uuid::Uuid;

use crate::error::AppError;

/// Bytes of HMAC-SHA256 kept in a cursor: enough that a forged cursor is refused.
const TAG_LEN: usize = 12;
const HKDF_SALT: &[u8] = b"chronicle cursors";
const HKDF_INFO: &[u8] = b"listing cursor v2";

/// The cursor signing key, derived from the configured secret.
pub(crate) struct CursorKey([u8; 32]);

fn invalid() -> AppError {
    AppError::BadRequest("invalid cursor".into())
}

impl CursorKey {
    pub(crate) fn new(secret: &str) -> Self {
        let mut key = [0u8; 32];
        Hkdf::<Sha256>::new(Some(HKDF_SALT), secret.as_bytes())
            .expand(HKDF_INFO, &mut key)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        Self(key)
    }

    fn mac(&self, tenant: Uuid, text: &[u8]) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(tenant.as_bytes());
        mac.update(text);
        mac
    }

    /// `text` plus its tag, in base64url: a cursor the client can hand back but not forge.
    pub(crate) fn seal(&self, tenant: Uuid, text: &str) -> String {
        let tag = self.mac(tenant, text.as_bytes()).finalize().into_bytes();
        let mut bytes = text.as_bytes().to_vec();
        bytes.extend_from_slice(&tag[..TAG_LEN]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The text of a cursor `seal` made for this tenant; anything else is a 400.
    pub(crate) fn open(&self, tenant: Uuid, cursor: &str) -> Result<String, AppError> {
        let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
        let split = bytes.len().checked_sub(TAG_LEN).ok_or_else(invalid)?;
        let (text, tag) = bytes.split_at(split);
        self.mac(tenant, text)
            .verify_truncated_left(tag)
            .map_err(|_| invalid())?;
        String::from_utf8(text.to_vec()).map_err(|_| invalid())
    }
}

/// A position in a listing sorted by some key: the key's name and direction, the last
/// row's id and its value of the key, sealed. The sort is part of the cursor, so a
/// cursor is refused (400) by a request that sorts another way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SortedCursor {
    /// e.g. `name:asc`.
    pub sort: String,
    pub id: Uuid,
    /// The row's value of the sort key, as text (the value may contain `:`).
    pub value: String,
}

impl CursorKey {
    pub(crate) fn encode_sorted(&self, tenant: Uuid, cursor: &SortedCursor) -> String {
        // `sort` is `<key>:<direction>`, neither containing ':'; the value comes last.
        self.seal(
            tenant,
            &format!("{}:{}:{}", cursor.sort, cursor.id.simple(), cursor.value),
        )
    }

    /// The cursor, if it was sealed for this tenant and for `sort`; anything else is 400.
    pub(crate) fn decode_sorted(
        &self,
        tenant: Uuid,
        sort: &str,
        cursor: &str,
    ) -> Result<SortedCursor, AppError> {
        let text = self.open(tenant, cursor)?;
        let rest = text
            .strip_prefix(sort)
            .and_then(|r| r.strip_prefix(':'))
            .ok_or_else(|| AppError::BadRequest("the cursor belongs to another sort".into()))?;
        let (id, value) = rest.split_once(':').ok_or_else(invalid)?;
        Ok(SortedCursor {
            sort: sort.to_string(),
            id: Uuid::try_parse(id).map_err(|_| invalid())?,
            value: value.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_tampering_is_refused() {
        let key = CursorKey::new("secret");
        let tenant = Uuid::now_v7();
        let id = Uuid::now_v7();
        let sorted = SortedCursor {
            sort: "created:desc".into(),
            id,
            value: "1700000000123456".into(),
        };
        let cursor = key.encode_sorted(tenant, &sorted);
        let decode =
            |key: &CursorKey, tenant, c: &str| key.decode_sorted(tenant, "created:desc", c);
        assert_eq!(decode(&key, tenant, &cursor).unwrap(), sorted);
        // Any change to the payload breaks the tag.
        let mut bytes = URL_SAFE_NO_PAD.decode(&cursor).unwrap();
        bytes[3] ^= 1;
        let flipped = URL_SAFE_NO_PAD.encode(&bytes);
        let forged = URL_SAFE_NO_PAD.encode(format!("{}:{}", 1, id.simple()));
        for bad in [
            "",
            "not base64!",
            "AAAA",
            &flipped,
            &forged,
            &cursor[..cursor.len() - 2],
        ] {
            assert!(decode(&key, tenant, bad).is_err(), "accepted {bad:?}");
        }
        assert!(
            decode(&key, Uuid::now_v7(), &cursor).is_err(),
            "another tenant's cursor"
        );
        assert!(
            decode(&CursorKey::new("other"), tenant, &cursor).is_err(),
            "another key"
        );
    }

    /// The tag is RFC 2104 HMAC-SHA256 under the RFC 5869 HKDF key: pinned against the
    /// RFC 4231 test vector for the MAC, and a fixed cursor for the whole format (the
    /// same bytes as Python's `hmac`/`hashlib` compute), so a dependency upgrade cannot
    /// silently invalidate every cursor in circulation.
    #[test]
    fn the_format_is_pinned() {
        let mut mac = Hmac::<Sha256>::new_from_slice(&[0x0b; 20]).unwrap();
        mac.update(b"Hi There");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        let key = CursorKey::new("secret");
        let tenant = Uuid::from_u128(7);
        let cursor = key.seal(tenant, "1700000000123456:0");
        assert_eq!(cursor, PINNED);
        assert_eq!(key.open(tenant, PINNED).unwrap(), "1700000000123456:0");
    }

    #[test]
    fn sorted_cursors_round_trip_and_are_bound_to_their_sort() {
        let key = CursorKey::new("secret");
        let tenant = Uuid::now_v7();
        let c = SortedCursor {
            sort: "name:asc".into(),
            id: Uuid::now_v7(),
            value: "q3: report".into(),
        };
        let text = key.encode_sorted(tenant, &c);
        assert_eq!(key.decode_sorted(tenant, "name:asc", &text).unwrap(), c);
        assert!(key.decode_sorted(tenant, "name:desc", &text).is_err());
        assert!(key.decode_sorted(tenant, "size:asc", &text).is_err());
        assert!(
            key.decode_sorted(Uuid::now_v7(), "name:asc", &text)
                .is_err()
        );
    }

    const PINNED: &str = "MTcwMDAwMDAwMDEyMzQ1NjowdmrrBiK9DmKn7r_s";
}
