//! The File aggregate: a logical file and its versions. Pure: commands in, events out,
//! no I/O. The worker pipeline's events (Hashed, DuplicateDetected, VirusFailed …) join
//! this enum with the files issue.

use std::collections::BTreeSet;

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::ids::UserId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileCommand {
    Create {
        owner_id: UserId,
        display_name: String,
    },
    Upload(NewVersion),
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
}

/// What the API knows about an uploaded version when the bytes are durable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewVersion {
    pub filename: String,
    pub declared_mime: String,
    pub size_bytes: u64,
    pub temp_location: String,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileEvent {
    FileCreated {
        owner_id: UserId,
        display_name: String,
    },
    Uploaded {
        version_number: u32,
        version: NewVersion,
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
}

impl DomainEvent for FileEvent {
    fn event_type(&self) -> String {
        match self {
            FileEvent::FileCreated { .. } => "FileCreated",
            FileEvent::Uploaded { .. } => "Uploaded",
            FileEvent::Renamed { .. } => "Renamed",
            FileEvent::Tagged { .. } => "Tagged",
            FileEvent::Untagged { .. } => "Untagged",
            FileEvent::Deleted => "Deleted",
            FileEvent::Restored => "Restored",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
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
    #[error("invalid {field}: {reason}")]
    Invalid {
        field: &'static str,
        reason: &'static str,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionState {
    pub number: u32,
    pub filename: String,
    pub size_bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct File {
    pub exists: bool,
    pub owner_id: Option<UserId>,
    pub display_name: String,
    pub tags: BTreeSet<String>,
    pub deleted: bool,
    pub versions: Vec<VersionState>,
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

fn check_tag(tag: &str) -> Result<(), FileError> {
    let invalid = |reason| FileError::Invalid {
        field: "tag",
        reason,
    };
    if tag.is_empty() || tag.len() > MAX_TAG_LEN {
        return Err(invalid("must be 1 to 64 bytes"));
    }
    if !tag
        .chars()
        .all(|c| c.is_alphanumeric() || "-_.".contains(c))
    {
        return Err(invalid(
            "may contain letters, digits, '-', '_' and '.' only",
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

    /// Decides which events a command produces, without touching state.
    pub fn decide(&self, command: FileCommand) -> Result<Vec<FileEvent>, FileError> {
        Ok(match command {
            FileCommand::Create {
                owner_id,
                display_name,
            } => {
                if self.exists {
                    return Err(FileError::AlreadyExists);
                }
                check_display_name(&display_name)?;
                vec![FileEvent::FileCreated {
                    owner_id,
                    display_name,
                }]
            }
            FileCommand::Upload(version) => {
                self.live()?;
                vec![FileEvent::Uploaded {
                    version_number: self.versions.len() as u32 + 1,
                    version,
                }]
            }
            FileCommand::Rename { display_name } => {
                self.live()?;
                check_display_name(&display_name)?;
                if display_name == self.display_name {
                    vec![]
                } else {
                    vec![FileEvent::Renamed { display_name }]
                }
            }
            FileCommand::Tag { tag } => {
                self.live()?;
                check_tag(&tag)?;
                if self.tags.contains(&tag) {
                    vec![]
                } else {
                    vec![FileEvent::Tagged { tag }]
                }
            }
            FileCommand::Untag { tag } => {
                self.live()?;
                if self.tags.contains(&tag) {
                    vec![FileEvent::Untagged { tag }]
                } else {
                    vec![]
                }
            }
            FileCommand::Delete => {
                self.live()?;
                vec![FileEvent::Deleted]
            }
            FileCommand::Restore => {
                if !self.exists {
                    return Err(FileError::NotFound);
                }
                if !self.deleted {
                    return Err(FileError::NotDeleted);
                }
                vec![FileEvent::Restored]
            }
        })
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    type Given = TestFramework<File>;

    fn created() -> FileEvent {
        FileEvent::FileCreated {
            owner_id: UserId(uuid::Uuid::nil()),
            display_name: "a.txt".into(),
        }
    }

    #[test]
    fn create_then_rename() {
        Given::with(())
            .given(vec![created()])
            .when(FileCommand::Rename {
                display_name: "b.txt".into(),
            })
            .then_expect_events(vec![FileEvent::Renamed {
                display_name: "b.txt".into(),
            }]);
    }

    #[test]
    fn renaming_a_missing_file_is_not_found() {
        Given::with(())
            .given_no_previous_events()
            .when(FileCommand::Rename {
                display_name: "b.txt".into(),
            })
            .then_expect_error(FileError::NotFound);
    }

    #[test]
    fn a_deleted_file_refuses_changes_until_restored() {
        Given::with(())
            .given(vec![created(), FileEvent::Deleted])
            .when(FileCommand::Tag { tag: "x".into() })
            .then_expect_error(FileError::Deleted);
        Given::with(())
            .given(vec![created(), FileEvent::Deleted])
            .when(FileCommand::Restore)
            .then_expect_events(vec![FileEvent::Restored]);
    }

    #[test]
    fn tagging_twice_is_a_no_op() {
        Given::with(())
            .given(vec![created(), FileEvent::Tagged { tag: "x".into() }])
            .when(FileCommand::Tag { tag: "x".into() })
            .then_expect_events(vec![]);
    }

    #[test]
    fn control_characters_in_names_are_refused() {
        Given::with(())
            .given(vec![created()])
            .when(FileCommand::Rename {
                display_name: "a\u{0}b".into(),
            })
            .then_expect_error(FileError::Invalid {
                field: "display_name",
                reason: "must not contain control characters",
            });
    }
}
