//! The File aggregate: a logical file and its versions. Pure: commands in, events out,
//! no I/O. Each version walks the `file_status` enum; the transitions are enforced in
//! `decide` and explained in docs/architecture.md ("Files (first slice)").

mod processing;
mod retention;
mod sharing;
mod types;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use serde::{Deserialize, Serialize};

use crate::ids::UserId;

pub use sharing::{Access, Grant, Grantee, Link};
pub use types::{
    FileCommand, FileError, FileEvent, FileStatus, FinalBlob, NewVersion, Original, Variant,
};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionState {
    pub number: u32,
    pub filename: String,
    pub size_bytes: u64,
    /// Computed by the API while receiving the bytes.
    pub sha256: String,
    #[serde(default)]
    pub status: FileStatus,
    #[serde(default)]
    pub mime_type: String,
    #[serde(default)]
    pub temp_location: Option<String>,
    /// The temporary key the bytes were uploaded under, kept once processing clears
    /// `temp_location`: how an upload's completion, re-run after a crash between its two
    /// commits, finds the version its bytes already became (`None` for a restored
    /// version, and in snapshots taken before it was kept).
    #[serde(default)]
    pub uploaded_from: Option<String>,
    #[serde(default)]
    pub storage_key: Option<String>,
    /// Set when the worker has re-hashed the bytes.
    #[serde(default)]
    pub verified_sha256: Option<String>,
    #[serde(default)]
    pub duplicate_of: Option<Original>,
    #[serde(default)]
    pub virus_signature: Option<String>,
    /// The latest processing attempt started, and the latest one that failed.
    #[serde(default)]
    pub attempt: u32,
    #[serde(default)]
    pub failed_attempt: u32,
    /// Attempts used before the latest operator retry; the budget counts from here.
    #[serde(default)]
    pub attempt_base: u32,
    #[serde(default)]
    pub variants: Vec<Variant>,
    /// Removed by retention: gone from history, downloads and restores.
    #[serde(default)]
    pub pruned: bool,
}

impl VersionState {
    fn blob(&self) -> Option<FinalBlob> {
        Some(FinalBlob {
            storage_key: self.storage_key.clone()?,
            size_bytes: self.size_bytes,
            sha256: self.sha256.clone(),
            detected_mime: self.mime_type.clone(),
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct File {
    pub exists: bool,
    pub owner_id: Option<UserId>,
    pub display_name: String,
    pub tags: BTreeSet<String>,
    pub deleted: bool,
    #[serde(default)]
    pub purged: bool,
    pub versions: Vec<VersionState>,
    /// Who else may read (or edit) the file (`FileShared` / `FileUnshared`).
    #[serde(default)]
    pub grants: Vec<Grant>,
    /// Links, revoked ones included (a revoked link stays known, and stays dead).
    #[serde(default)]
    pub links: Vec<Link>,
    /// The reason of the legal hold in force, if any: no delete, purge or pruning.
    #[serde(default)]
    pub legal_hold: Option<String>,
}

const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 64;

fn check_display_name(name: &str) -> Result<(), FileError> {
    let invalid = |reason| FileError::Invalid {
        field: "display_name",
        reason,
    };
    if name.trim().is_empty() {
        return Err(invalid("must not be empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(invalid("must be at most 255 bytes"));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid("must not contain control characters"));
    }
    Ok(())
}

/// The rule every tag follows (also checked by the bulk route before any command): the
/// document's `[\w.-]{1,64}`, where `\w` is ASCII as in every JSON Schema (ECMA-262)
/// validator, so the document and the server agree on every tag.
pub fn check_tag(tag: &str) -> Result<(), FileError> {
    let invalid = |reason| FileError::Invalid {
        field: "tag",
        reason,
    };
    if tag.is_empty() || tag.len() > MAX_TAG_LEN {
        return Err(invalid("must be 1 to 64 bytes"));
    }
    if !tag
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(invalid(
            "may contain ASCII letters and digits, '-', '_' and '.' only",
        ));
    }
    Ok(())
}

impl File {
    fn live(&self) -> Result<(), FileError> {
        match (self.exists, self.deleted) {
            (false, _) => Err(FileError::NotFound),
            (true, true) => Err(FileError::Deleted),
            (true, false) => Ok(()),
        }
    }

    /// The version a download serves: the newest completed one.
    pub fn current_version(&self) -> Option<&VersionState> {
        self.versions
            .iter()
            .rev()
            .find(|v| v.status == FileStatus::Completed && !v.pruned)
    }

    fn version(&self, number: u32) -> Result<&VersionState, FileError> {
        if !self.exists {
            return Err(FileError::NotFound);
        }
        self.versions
            .iter()
            .find(|v| v.number == number && !v.pruned)
            .ok_or(FileError::VersionNotFound)
    }

    fn version_mut(&mut self, number: u32) -> Option<&mut VersionState> {
        self.versions.iter_mut().find(|v| v.number == number)
    }

    fn next_version_number(&self) -> u32 {
        self.versions.len() as u32 + 1
    }

    /// Decides which events a command produces, without touching state.
    pub fn decide(&self, command: FileCommand) -> Result<Vec<FileEvent>, FileError> {
        if self.purged {
            // Purging is idempotent; everything else about a purged file is gone.
            return match command {
                FileCommand::Purge => Ok(vec![]),
                _ => Err(FileError::Purged),
            };
        }
        match command {
            FileCommand::Create {
                owner_id,
                display_name,
            } => {
                if self.exists {
                    return Err(FileError::AlreadyExists);
                }
                check_display_name(&display_name)?;
                Ok(vec![FileEvent::FileCreated {
                    owner_id,
                    display_name,
                }])
            }
            FileCommand::Upload(version) => {
                self.live()?;
                Ok(vec![FileEvent::Uploaded {
                    version_number: self.next_version_number(),
                    version,
                }])
            }
            FileCommand::CreateWithUpload {
                owner_id,
                display_name,
                tags,
                version,
            } => {
                if self.exists {
                    return Err(FileError::AlreadyExists);
                }
                check_display_name(&display_name)?;
                let tags: BTreeSet<String> = tags.into_iter().collect();
                for tag in &tags {
                    check_tag(tag)?;
                }
                let mut events = vec![
                    FileEvent::FileCreated {
                        owner_id,
                        display_name,
                    },
                    FileEvent::Uploaded {
                        version_number: 1,
                        version,
                    },
                ];
                events.extend(tags.into_iter().map(|tag| FileEvent::Tagged { tag }));
                Ok(events)
            }
            FileCommand::Rename { display_name } => {
                self.live()?;
                check_display_name(&display_name)?;
                Ok(if display_name == self.display_name {
                    vec![]
                } else {
                    vec![FileEvent::Renamed { display_name }]
                })
            }
            FileCommand::Tag { tag } => {
                self.live()?;
                check_tag(&tag)?;
                Ok(if self.tags.contains(&tag) {
                    vec![]
                } else {
                    vec![FileEvent::Tagged { tag }]
                })
            }
            FileCommand::Untag { tag } => {
                self.live()?;
                if self.tags.contains(&tag) {
                    return Ok(vec![FileEvent::Untagged { tag }]);
                }
                // Removing a tag the file does not have is a no-op, but a name no tag can
                // have is refused like `Tag` refuses it, not silently accepted. (A tag the
                // file has is always removable, even one an older rule let in.)
                check_tag(&tag)?;
                Ok(vec![])
            }
            FileCommand::Delete => {
                self.live()?;
                self.not_held()?;
                Ok(vec![FileEvent::Deleted])
            }
            FileCommand::Restore => {
                if !self.exists {
                    return Err(FileError::NotFound);
                }
                if !self.deleted {
                    return Err(FileError::NotDeleted);
                }
                Ok(vec![FileEvent::Restored])
            }
            FileCommand::Purge => {
                if !self.exists {
                    return Err(FileError::NotFound);
                }
                self.not_held()?;
                Ok(vec![FileEvent::Purged])
            }
            FileCommand::RestoreVersion { version_number } => {
                self.live()?;
                let from = self.version(version_number)?;
                let blob = match (from.status, from.blob()) {
                    (FileStatus::Completed, Some(blob)) => blob,
                    (status, _) => {
                        return Err(FileError::WrongStatus {
                            status,
                            action: "restore it",
                        });
                    }
                };
                Ok(vec![FileEvent::VersionRestored {
                    version_number: self.next_version_number(),
                    from_version: version_number,
                    filename: from.filename.clone(),
                    blob,
                }])
            }
            FileCommand::PruneVersions { keep } => self.decide_prune(keep),
            FileCommand::Share { grantee, access } => self.decide_share(grantee, access),
            FileCommand::Unshare { grantee } => self.decide_unshare(grantee),
            FileCommand::PlaceHold { reason } => self.decide_hold(reason),
            FileCommand::ReleaseHold => self.decide_release(),
            FileCommand::CreateLink(link) => self.decide_link(link),
            FileCommand::RevokeLink { link_id } => self.decide_revoke_link(link_id),
            worker => self.decide_processing(worker),
        }
    }
}

impl Aggregate for File {
    const TYPE: &'static str = "file";
    type Command = FileCommand;
    type Event = FileEvent;
    type Error = FileError;
    type Services = ();

    async fn handle(
        &mut self,
        command: FileCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), FileError> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: FileEvent) {
        match event {
            FileEvent::FileCreated {
                owner_id,
                display_name,
            } => {
                self.exists = true;
                self.owner_id = Some(owner_id);
                self.display_name = display_name;
            }
            FileEvent::Uploaded {
                version_number,
                version,
            } => self.versions.push(VersionState {
                number: version_number,
                filename: version.filename,
                size_bytes: version.size_bytes,
                sha256: version.sha256,
                mime_type: version.declared_mime,
                uploaded_from: Some(version.temp_location.clone()),
                temp_location: Some(version.temp_location),
                ..VersionState::default()
            }),
            FileEvent::VersionRestored {
                version_number,
                filename,
                blob,
                ..
            } => self.versions.push(VersionState {
                number: version_number,
                filename,
                size_bytes: blob.size_bytes,
                sha256: blob.sha256,
                status: FileStatus::Completed,
                mime_type: blob.detected_mime,
                storage_key: Some(blob.storage_key),
                ..VersionState::default()
            }),
            FileEvent::Renamed { display_name } => self.display_name = display_name,
            FileEvent::Tagged { tag } => {
                self.tags.insert(tag);
            }
            FileEvent::Untagged { tag } => {
                self.tags.remove(&tag);
            }
            FileEvent::Deleted => self.deleted = true,
            FileEvent::Restored => self.deleted = false,
            FileEvent::Purged => self.purged = true,
            event @ (FileEvent::FileShared { .. }
            | FileEvent::FileUnshared { .. }
            | FileEvent::LegalHoldPlaced { .. }
            | FileEvent::LegalHoldReleased
            | FileEvent::LinkCreated(_)
            | FileEvent::LinkRevoked { .. }) => self.apply_sharing(event),
            FileEvent::ProcessingStarted {
                version_number,
                attempt,
            } => {
                if let Some(v) = self.version_mut(version_number) {
                    v.status = FileStatus::Processing;
                    v.attempt = attempt;
                }
            }
            FileEvent::Hashed {
                version_number,
                sha256,
            } => {
                if let Some(v) = self.version_mut(version_number) {
                    v.verified_sha256 = Some(sha256);
                }
            }
            FileEvent::DuplicateDetected {
                version_number,
                original,
            } => {
                if let Some(v) = self.version_mut(version_number) {
                    if matches!(original, Original::ThisFile { .. }) {
                        v.status = FileStatus::Duplicate;
                        v.temp_location = None;
                    }
                    v.duplicate_of = Some(original);
                }
            }
            FileEvent::VirusFailed {
                version_number,
                signature,
            } => {
                if let Some(v) = self.version_mut(version_number) {
                    v.status = FileStatus::VirusFailed;
                    v.virus_signature = Some(signature);
                    v.temp_location = None;
                }
            }
            FileEvent::ProcessingRetried { version_number } => {
                if let Some(v) = self.version_mut(version_number) {
                    v.status = FileStatus::Queued;
                    v.attempt_base = v.failed_attempt;
                }
            }
            FileEvent::ProcessingFailed {
                version_number,
                attempt,
                last_attempt,
                ..
            } => {
                if let Some(v) = self.version_mut(version_number) {
                    v.failed_attempt = attempt;
                    v.status = if last_attempt {
                        FileStatus::Failed
                    } else {
                        FileStatus::Queued
                    };
                }
            }
            FileEvent::VersionPruned { version_number } => {
                if let Some(v) = self.version_mut(version_number) {
                    v.pruned = true;
                }
            }
            FileEvent::Optimized {
                version_number,
                variant,
            } => {
                if let Some(v) = self.version_mut(version_number) {
                    v.variants.push(variant);
                }
            }
            FileEvent::VersionCompleted {
                version_number,
                result,
            } => {
                if let Some(v) = self.version_mut(version_number) {
                    v.status = FileStatus::Completed;
                    v.size_bytes = result.size_bytes;
                    v.sha256 = result.sha256;
                    v.mime_type = result.detected_mime;
                    v.storage_key = Some(result.storage_key);
                    v.temp_location = None;
                }
            }
        }
    }
}
