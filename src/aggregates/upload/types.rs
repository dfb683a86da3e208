//! The Upload aggregate's vocabulary: commands, events, errors.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use crate::ids::{FileId, UserId};

/// What a completed upload becomes: a new file, or a new version of an existing one.
/// The file id is chosen at creation, so completing twice targets the same file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadTarget {
    pub file_id: FileId,
    /// `false`: a new version of `file_id`, which existed when the upload was created.
    pub new_file: bool,
}

/// The bytes after an upload's last full S3 part, in their own object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tail {
    pub key: String,
    pub length: u64,
}

/// What one chunk added in S3 mode: parts from `first_part` (0-based) on, replacing any
/// recorded at or after it, and the new tail (`None`: the chunk ended on a part boundary).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredParts {
    pub first_part: u32,
    pub e_tags: Vec<String>,
    pub tail: Option<Tail>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadCommand {
    Start {
        owner_id: UserId,
        /// `None`: creation-defer-length; declared by a later PATCH.
        length: Option<u64>,
        /// The largest length this upload may reach (`TUS_MAX_SIZE` at creation).
        max_size: u64,
        filename: String,
        filetype: String,
        target: UploadTarget,
        temp_key: String,
        expires_at: DateTime<Utc>,
        /// S3 mode: the multipart upload the bytes go to.
        multipart_id: Option<String>,
        /// A direct upload: the client PUTs the parts to presigned URLs itself.
        direct: Option<Direct>,
    },
    /// `bytes` bytes were appended durably at `from_offset` (possibly zero, when a PATCH
    /// only declares a deferred length).
    AcceptChunk {
        from_offset: u64,
        bytes: u64,
        declared_length: Option<u64>,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
        /// S3 mode: where the bytes went.
        parts: Option<StoredParts>,
        /// The running SHA-256 of every byte up to the new offset (`uploads::digest::save_sha256`),
        /// so completion needs no re-read; `None` when it was not carried along.
        sha256_state: Option<String>,
    },
    /// The File command for the bytes has committed; records which version they became.
    Complete { version_number: u32, sha256: String },
    /// The expiry job: only an unfinished upload past its expiry expires.
    Expire { now: DateTime<Utc> },
    /// `DELETE` (tus termination).
    Terminate,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, strum::VariantNames)]
pub enum UploadEvent {
    UploadStarted {
        owner_id: UserId,
        length: Option<u64>,
        max_size: u64,
        filename: String,
        filetype: String,
        target: UploadTarget,
        temp_key: String,
        expires_at: DateTime<Utc>,
    },
    ChunkAccepted {
        from_offset: u64,
        /// The new offset: every byte before it is durable in the temp object.
        offset: u64,
        /// Set when this PATCH declared a deferred length.
        #[serde(default)]
        declared_length: Option<u64>,
        /// Activity pushes the expiry forward.
        expires_at: DateTime<Utc>,
    },
    UploadCompleted {
        file_id: FileId,
        version_number: u32,
        sha256: String,
    },
    UploadExpired,
    UploadTerminated,
    /// S3 mode, recorded with `UploadStarted`: the multipart upload behind `temp_key`.
    /// (A new event type rather than a field of `UploadStarted`, so v1 stays as it is.)
    MultipartOpened {
        multipart_id: String,
    },
    /// S3 mode, recorded with each `ChunkAccepted` that carried bytes.
    PartsStored(StoredParts),
    /// Recorded with a `ChunkAccepted` that carried bytes, when the SHA-256 of the bytes
    /// before the new offset was carried across the PATCHes: the hash function's
    /// intermediate state, serialized (no bytes of the file can be read back from it).
    Sha256Carried {
        sha256_state: String,
    },
    /// A direct upload (`POST /v1/files/direct`), recorded with `UploadStarted` and
    /// `MultipartOpened`: the client sends the parts straight to the bucket and declared
    /// the bytes' SHA-256, which the worker checks.
    DirectOpened(Direct),
}

/// What a direct upload's client declared and was given: Chronicle never sees the bytes,
/// so the SHA-256 is the client's word until the worker has hashed the object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Direct {
    pub sha256: String,
    /// Every part but the last is this long.
    pub part_size: u64,
    pub parts: u32,
}

impl DomainEvent for UploadEvent {
    fn event_type(&self) -> String {
        match self {
            UploadEvent::UploadStarted { .. } => "UploadStarted",
            UploadEvent::ChunkAccepted { .. } => "ChunkAccepted",
            UploadEvent::UploadCompleted { .. } => "UploadCompleted",
            UploadEvent::UploadExpired => "UploadExpired",
            UploadEvent::UploadTerminated => "UploadTerminated",
            UploadEvent::MultipartOpened { .. } => "MultipartOpened",
            UploadEvent::PartsStored(_) => "PartsStored",
            UploadEvent::Sha256Carried { .. } => "Sha256Carried",
            UploadEvent::DirectOpened(_) => "DirectOpened",
        }
        .into()
    }

    fn event_version(&self) -> String {
        "1".into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UploadError {
    #[error("upload not found")]
    NotFound,
    #[error("the upload already exists")]
    AlreadyExists,
    #[error("the upload has expired")]
    Expired,
    #[error("the upload was terminated")]
    Terminated,
    #[error("the upload is already complete")]
    Completed,
    #[error("Upload-Offset does not match the upload's offset {expected}")]
    OffsetMismatch { expected: u64 },
    #[error("the upload would exceed its length of {length} bytes")]
    BeyondLength { length: u64 },
    #[error("the upload would exceed the limit of {max} bytes")]
    TooLarge { max: u64 },
    #[error("Upload-Length is already {length} and cannot change")]
    LengthAlreadyKnown { length: u64 },
    #[error("Upload-Length {declared} is smaller than the bytes already received ({offset})")]
    LengthBelowOffset { declared: u64, offset: u64 },
    #[error("the upload has not received all of its bytes")]
    Incomplete,
    #[error("the upload has not expired yet")]
    NotExpired,
    #[error("a direct upload's parts go to its presigned URLs, not through the API")]
    Direct,
}
