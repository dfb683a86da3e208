//! Crypto-shredding of personal data (docs/architecture.md, "Event versioning and
//! erasure"). Personal fields of events are stored encrypted with a per-user data key
//! that lives outside the event log (`personal_data_keys`); erasing a user destroys the
//! key, so every copy of those events — in the log, exports and backups — becomes
//! unreadable at once while the hash chain, which covers the stored ciphertext, stays
//! intact.
//!
//! Write path: the event store seals the fields listed in [`fields`] before hashing.
//! Read path: [`open`] turns any stored payload into the current, readable form
//! (upcast, then decrypt or mark `[erased]`); the event store and the projector runtime
//! both call it, so aggregates and read models never see ciphertext.

pub mod fields;
pub mod keys;
mod open;
pub mod seal;

pub use keys::KeyState;
pub use keys::{KeyError, KeyRing};
pub use open::{
    OpenError, StoredEvent, open, open_with, seal_payload, seal_payload_with_nonces,
    subjects_to_seal,
};

pub use crate::aggregates::ERASED;
