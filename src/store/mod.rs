//! The event store: postgres-es's table and cqrs-es's traits, plus what they lack —
//! tenant scoping, a hash chain, signed commits, correct snapshots, signed checkpoints
//! and verification.

pub mod chain;
pub mod checkpoint;
pub mod checkpoint_check;
mod checkpoint_merge;
mod checkpoint_vet;
pub mod checkpointer;
mod event_log;
mod event_store;
pub mod export;
pub mod hash;
pub mod history;
pub mod idempotency;
pub mod metadata;
mod remembered;
mod stored_form;
pub mod trust;
pub mod unprotected;
pub mod verify;
mod writers;

#[cfg(test)]
mod golden;

pub use event_log::{AppendError, EventLog, StreamAppend};
pub use event_store::{ChronicleStore, StoreContext};
pub use metadata::{Actor, EventMetadata};
pub use writers::{StreamWriters, Turn};
