//! Aggregates: commands → events → state. Pure, no I/O; tested as given/when/then.

pub mod file;

pub use file::{File, FileCommand, FileError, FileEvent};
