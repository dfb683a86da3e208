//! Ingesting uploads: what the API decides about incoming bytes before any event is
//! written (safe filenames, detected content type). The streaming upload endpoint
//! builds on these (files issue).

pub mod digest;
pub mod filename;
pub mod lock;
pub mod mime;
pub mod parts;
pub mod receive;
