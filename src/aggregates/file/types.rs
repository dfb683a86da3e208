//! The File aggregate's vocabulary: commands, events, version status, errors.

use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::sharing::{Access, Grantee, Link};
use crate::ids::{FileId, UserId};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileCommand {
    Create {
        owner_id: UserId,
        display_name: String,
    },
    Upload(NewVersion),
    /// A new file and its first version in one commit, so no file ever exists without
    /// the upload that created it.
    CreateWithUpload {
        owner_id: UserId,
        display_name: String,
        tags: Vec<String>,
        version: NewVersion,
    },
    Rename {
        display_name: String,
    },
    Tag {
        tag: String,
    },
    Untag {
        tag: String,
    },
    Delete,
    Restore,
    /// Forget the file for good (its blobs go to the garbage collector; events stay).
    Purge,
    /// A new version that points at an old completed version's blob: no byte copy.
    RestoreVersion {
        version_number: u32,
    },
    /// Worker commands. Jobs are delivered at least once, so each is a no-op when its
    /// effect is already recorded.
    StartProcessing {
        version_number: u32,
        attempt: u32,
    },
    RecordHash {
        version_number: u32,
        sha256: String,
    },
    RecordDuplicate {
        version_number: u32,
        original: Original,
    },
    FailVirusScan {
        version_number: u32,
        signature: String,
    },
    FailProcessing {
        version_number: u32,
        attempt: u32,
        max_attempts: u32,
        reason: String,
    },
    RecordOptimized {
        version_number: u32,
        variant: Variant,
    },
    Complete {
        version_number: u32,
        result: FinalBlob,
    },
    /// An operator sends a dead-lettered version back to the queue with a fresh budget
    /// of attempts.
    RetryProcessing {
        version_number: u32,
    },
    /// Retention (`VERSION_RETENTION`): keep the newest `keep` completed versions and
    /// prune every settled version older than them. Run by the worker's GC loop.
    PruneVersions {
        keep: u32,
    },
    /// Grant `grantee` `access` (replacing an earlier grant to the same grantee).
    Share {
        grantee: Grantee,
        access: Access,
    },
    Unshare {
        grantee: Grantee,
    },
    /// A legal hold: no delete, purge or version pruning until released.
    PlaceHold {
        reason: String,
    },
    ReleaseHold,
    CreateLink(Link),
    RevokeLink {
        link_id: uuid::Uuid,
    },
}

/// What the API knows about an uploaded version when the bytes are durable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewVersion {
    pub filename: String,
    pub declared_mime: String,
    pub size_bytes: u64,
    pub temp_location: String,
    /// Computed while the bytes were received.
    pub sha256: String,
}

/// The version whose bytes a new version repeats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Original {
    /// A completed version of the same file: the new version becomes `duplicate`.
    ThisFile { version_number: u32 },
    /// A completed version of another file of the tenant: the blob is shared and
    /// processing goes on to completion.
    OtherFile {
        file_id: FileId,
        version_number: u32,
    },
}

/// A derived rendition of a version (thumbnail, EXIF-stripped copy …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Variant {
    pub name: String,
    pub storage_key: String,
    pub mime_type: String,
    pub size_bytes: u64,
}

/// Where a finished version's bytes live and what they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalBlob {
    pub storage_key: String,
    pub size_bytes: u64,
    pub sha256: String,
    pub detected_mime: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, strum::VariantNames)]
pub enum FileEvent {
    FileCreated {
        owner_id: UserId,
        display_name: String,
    },
    Uploaded {
        version_number: u32,
        version: NewVersion,
    },
    Hashed {
        version_number: u32,
        sha256: String,
    },
    DuplicateDetected {
        version_number: u32,
        original: Original,
    },
    VirusFailed {
        version_number: u32,
        signature: String,
    },
    ProcessingStarted {
        version_number: u32,
        attempt: u32,
    },
    ProcessingFailed {
        version_number: u32,
        attempt: u32,
        reason: String,
        /// No attempt is left: the version is `failed`, not `queued` for a retry.
        last_attempt: bool,
        /// The budget the worker ran with (jobs.max_attempts).
        #[serde(default)]
        max_attempts: u32,
    },
    /// A dead-lettered version is queued again (`POST /v1/jobs/{id}/retry`).
    ProcessingRetried {
        version_number: u32,
    },
    Optimized {
        version_number: u32,
        variant: Variant,
    },
    VersionCompleted {
        version_number: u32,
        result: FinalBlob,
    },
    Renamed {
        display_name: String,
    },
    Tagged {
        tag: String,
    },
    Untagged {
        tag: String,
    },
    Deleted,
    Restored,
    Purged,
    VersionRestored {
        version_number: u32,
        from_version: u32,
        filename: String,
        blob: FinalBlob,
    },
    /// Retention removed an old settled version from the file's history; its blob goes
    /// to the garbage collector once nothing else references it. The version's events
    /// stay in the log (audit).
    VersionPruned {
        version_number: u32,
    },
    FileShared {
        grantee: Grantee,
        access: Access,
    },
    FileUnshared {
        grantee: Grantee,
    },
    LegalHoldPlaced {
        reason: String,
    },
    LegalHoldReleased,
    LinkCreated(Link),
    LinkRevoked {
        link_id: uuid::Uuid,
    },
}

impl DomainEvent for FileEvent {
    fn event_type(&self) -> String {
        match self {
            FileEvent::FileCreated { .. } => "FileCreated",
            FileEvent::Uploaded { .. } => "Uploaded",
            FileEvent::Hashed { .. } => "Hashed",
            FileEvent::DuplicateDetected { .. } => "DuplicateDetected",
            FileEvent::VirusFailed { .. } => "VirusFailed",
            FileEvent::ProcessingStarted { .. } => "ProcessingStarted",
            FileEvent::ProcessingFailed { .. } => "ProcessingFailed",
            FileEvent::Optimized { .. } => "Optimized",
            FileEvent::VersionCompleted { .. } => "VersionCompleted",
            FileEvent::Renamed { .. } => "Renamed",
            FileEvent::Tagged { .. } => "Tagged",
            FileEvent::Untagged { .. } => "Untagged",
            FileEvent::Deleted => "Deleted",
            FileEvent::Restored => "Restored",
            FileEvent::Purged => "Purged",
            FileEvent::VersionRestored { .. } => "VersionRestored",
            FileEvent::ProcessingRetried { .. } => "ProcessingRetried",
            FileEvent::VersionPruned { .. } => "VersionPruned",
            FileEvent::FileShared { .. } => "FileShared",
            FileEvent::FileUnshared { .. } => "FileUnshared",
            FileEvent::LegalHoldPlaced { .. } => "LegalHoldPlaced",
            FileEvent::LegalHoldReleased => "LegalHoldReleased",
            FileEvent::LinkCreated(_) => "LinkCreated",
            FileEvent::LinkRevoked { .. } => "LinkRevoked",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

/// A version's processing status: the `file_status` Postgres enum, value for value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileStatus {
    #[default]
    Uploaded,
    Queued,
    Processing,
    VirusFailed,
    Duplicate,
    Failed,
    Completed,
}

impl FileStatus {
    /// The Postgres `file_status` label.
    pub fn as_str(self) -> &'static str {
        match self {
            FileStatus::Uploaded => "uploaded",
            FileStatus::Queued => "queued",
            FileStatus::Processing => "processing",
            FileStatus::VirusFailed => "virus_failed",
            FileStatus::Duplicate => "duplicate",
            FileStatus::Failed => "failed",
            FileStatus::Completed => "completed",
        }
    }

    /// Settled versions never change status again.
    pub fn is_settled(self) -> bool {
        matches!(
            self,
            FileStatus::VirusFailed
                | FileStatus::Duplicate
                | FileStatus::Failed
                | FileStatus::Completed
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    #[error("file not found")]
    NotFound,
    #[error("file already exists")]
    AlreadyExists,
    #[error("file is deleted")]
    Deleted,
    #[error("file is not deleted")]
    NotDeleted,
    #[error("file is purged")]
    Purged,
    #[error("version not found")]
    VersionNotFound,
    /// The command does not fit the version's status (e.g. completing a version that
    /// failed its virus scan). The worker drops such a job instead of retrying it.
    #[error("version is {status:?}, cannot {action}")]
    WrongStatus {
        status: FileStatus,
        action: &'static str,
    },
    /// The worker recorded a different outcome for the same step before.
    #[error("version already has a different {what}")]
    Conflicting { what: &'static str },
    /// A legal hold is in force: delete, purge and pruning are refused (409).
    #[error("the file is under legal hold")]
    LegalHold,
    #[error("link not found")]
    LinkNotFound,
    #[error("invalid {field}: {reason}")]
    Invalid {
        field: &'static str,
        reason: &'static str,
    },
}
