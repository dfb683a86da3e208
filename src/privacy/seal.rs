//! AES-256-GCM sealing of one personal field. A random 96-bit nonce per field; the
//! associated data binds tenant, user, event type and field name, so a ciphertext
//! cannot be moved to another field, event, user or tenant without failing to open.
//! Stored form of a sealed field: `{"aes256gcm": base64(nonce ‖ ciphertext ‖ tag)}`.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use uuid::Uuid;

// The stored forms of a personal field are part of the events' stored forms, which the
// upcasters own.
pub use crate::aggregates::upcast::{PLAINTEXT, SEALED};

const NONCE_LEN: usize = 12;

/// A user's data key. Debug never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct DataKey(pub(crate) [u8; 32]);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey([redacted])")
    }
}

impl DataKey {
    pub fn generate() -> Self {
        DataKey(rand::random())
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        Some(DataKey(bytes.try_into().ok()?))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// Where a field sits: what the associated data binds.
#[derive(Debug, Clone, Copy)]
pub struct FieldPlace<'a> {
    pub tenant_id: Uuid,
    pub user_id: Uuid,
    pub event_type: &'a str,
    pub field: &'a str,
}

impl FieldPlace<'_> {
    fn associated_data(&self) -> Vec<u8> {
        format!(
            "chronicle-personal-v1\n{}\n{}\n{}.{}",
            self.tenant_id, self.user_id, self.event_type, self.field
        )
        .into_bytes()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("sealed field is not valid base64 or too short")]
    Malformed,
    /// Wrong key, wrong place or altered bytes: GCM's tag check failed.
    #[error("sealed field does not open with its user's key")]
    Tampered,
}

/// Seals with a fresh random nonce.
pub fn seal(key: &DataKey, place: &FieldPlace<'_>, plaintext: &str) -> String {
    seal_with_nonce(key, place, plaintext, rand::random())
}

/// Seals with a given nonce. Only for reproducible fixtures (golden files): reusing a
/// nonce under one key breaks GCM, so production code calls [`seal`].
pub fn seal_with_nonce(
    key: &DataKey,
    place: &FieldPlace<'_>,
    plaintext: &str,
    nonce: [u8; NONCE_LEN],
) -> String {
    let cipher = Aes256Gcm::new((&key.0).into());
    let aad = place.associated_data();
    let ciphertext = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext.as_bytes(),
                aad: &aad,
            },
        )
        .expect("AES-GCM encryption of an in-memory string cannot fail");
    let mut out = nonce.to_vec();
    out.extend_from_slice(&ciphertext);
    STANDARD.encode(out)
}

pub fn open(key: &DataKey, place: &FieldPlace<'_>, sealed: &str) -> Result<String, SealError> {
    let bytes = STANDARD.decode(sealed).map_err(|_| SealError::Malformed)?;
    if bytes.len() < NONCE_LEN + 16 {
        return Err(SealError::Malformed);
    }
    let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
    let cipher = Aes256Gcm::new((&key.0).into());
    let aad = place.associated_data();
    let plain = cipher
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad: &aad,
            },
        )
        .map_err(|_| SealError::Tampered)?;
    String::from_utf8(plain).map_err(|_| SealError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(field: &str) -> FieldPlace<'_> {
        FieldPlace {
            tenant_id: Uuid::from_u128(1),
            user_id: Uuid::from_u128(2),
            event_type: "UserRegistered",
            field,
        }
    }

    #[test]
    fn seals_and_opens_with_a_fresh_nonce_each_time() {
        let key = DataKey::generate();
        let a = seal(&key, &place("email"), "ada@example.com");
        let b = seal(&key, &place("email"), "ada@example.com");
        assert_ne!(a, b, "same plaintext must not give the same ciphertext");
        assert!(!a.contains("ada"));
        assert_eq!(open(&key, &place("email"), &a).unwrap(), "ada@example.com");
    }

    #[test]
    fn a_ciphertext_does_not_open_elsewhere_or_with_another_key() {
        let key = DataKey::generate();
        let sealed = seal(&key, &place("email"), "ada@example.com");
        assert_eq!(
            open(&key, &place("name"), &sealed),
            Err(SealError::Tampered)
        );
        let other_user = FieldPlace {
            user_id: Uuid::from_u128(3),
            ..place("email")
        };
        assert_eq!(open(&key, &other_user, &sealed), Err(SealError::Tampered));
        let other_tenant = FieldPlace {
            tenant_id: Uuid::from_u128(9),
            ..place("email")
        };
        assert_eq!(open(&key, &other_tenant, &sealed), Err(SealError::Tampered));
        assert_eq!(
            open(&DataKey::generate(), &place("email"), &sealed),
            Err(SealError::Tampered)
        );
        let mut bytes = STANDARD.decode(&sealed).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        assert_eq!(
            open(&key, &place("email"), &STANDARD.encode(bytes)),
            Err(SealError::Tampered)
        );
        assert_eq!(open(&key, &place("email"), "%%"), Err(SealError::Malformed));
        assert_eq!(
            open(&key, &place("email"), "AAAA"),
            Err(SealError::Malformed)
        );
    }

    #[test]
    fn debug_hides_the_key() {
        let key = DataKey([7; 32]);
        assert_eq!(format!("{key:?}"), "DataKey([redacted])");
    }
}
