//! The Upload aggregate: one resumable (tus) upload, from creation to the moment its
//! bytes join the File pipeline. Pure: commands in, events out, no I/O. Its offset is
//! the truth every API instance serves HEAD and PATCH from (docs/architecture.md,
//! "Resumable uploads (tus)").

mod types;

#[cfg(test)]
mod tests;

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use serde::{Deserialize, Serialize};

use crate::ids::{FileId, UserId};

pub use types::{Direct, StoredParts, Tail, UploadCommand, UploadError, UploadEvent, UploadTarget};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum UploadStatus {
    /// No UploadStarted yet.
    #[default]
    Missing,
    InProgress,
    Completed,
    Expired,
    Terminated,
}

/// Which file version a completed upload became.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletedAs {
    pub file_id: FileId,
    pub version_number: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upload {
    pub status: UploadStatus,
    pub owner_id: Option<UserId>,
    pub length: Option<u64>,
    pub max_size: u64,
    pub offset: u64,
    pub filename: String,
    pub filetype: String,
    pub target: Option<UploadTarget>,
    pub temp_key: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub completed: Option<CompletedAs>,
    /// S3 mode only (`None` under local storage, where bytes append to a file).
    #[serde(default)]
    pub multipart: Option<Multipart>,
    /// The running SHA-256 of the bytes before `offset`, if every chunk carried it.
    #[serde(default)]
    pub sha256_state: Option<String>,
    /// A direct upload (S3 only): the client's declared SHA-256 and part layout.
    #[serde(default)]
    pub direct: Option<Direct>,
}

/// An upload's S3 multipart state: everything an instance needs to continue it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Multipart {
    pub id: String,
    /// E-tags of the full parts, in part order; they hold the bytes before the tail.
    pub e_tags: Vec<String>,
    pub tail: Option<Tail>,
}

impl Upload {
    /// Refuses anything but an unfinished upload that has not expired by `now`.
    fn open(&self, now: DateTime<Utc>) -> Result<(), UploadError> {
        match self.status {
            UploadStatus::Missing => Err(UploadError::NotFound),
            UploadStatus::Completed => Err(UploadError::Completed),
            UploadStatus::Expired => Err(UploadError::Expired),
            UploadStatus::Terminated => Err(UploadError::Terminated),
            UploadStatus::InProgress if self.expires_at.is_some_and(|at| now >= at) => {
                Err(UploadError::Expired)
            }
            UploadStatus::InProgress => Ok(()),
        }
    }

    /// Whether every declared byte has arrived (a deferred length is never complete).
    pub fn is_full(&self) -> bool {
        self.length == Some(self.offset)
    }

    pub fn decide(&self, command: UploadCommand) -> Result<Vec<UploadEvent>, UploadError> {
        match command {
            UploadCommand::Start {
                owner_id,
                length,
                max_size,
                filename,
                filetype,
                target,
                temp_key,
                expires_at,
                multipart_id,
                direct,
            } => {
                if self.status != UploadStatus::Missing {
                    return Err(UploadError::AlreadyExists);
                }
                if length.is_some_and(|l| l > max_size) {
                    return Err(UploadError::TooLarge { max: max_size });
                }
                let mut events = vec![UploadEvent::UploadStarted {
                    owner_id,
                    length,
                    max_size,
                    filename,
                    filetype,
                    target,
                    temp_key,
                    expires_at,
                }];
                if let Some(multipart_id) = multipart_id {
                    events.push(UploadEvent::MultipartOpened { multipart_id });
                }
                if let Some(direct) = direct {
                    events.push(UploadEvent::DirectOpened(direct));
                }
                Ok(events)
            }
            UploadCommand::AcceptChunk {
                from_offset,
                bytes,
                declared_length,
                now,
                expires_at,
                parts,
                sha256_state,
            } => {
                self.open(now)?;
                if self.direct.is_some() {
                    return Err(UploadError::Direct);
                }
                if from_offset != self.offset {
                    return Err(UploadError::OffsetMismatch {
                        expected: self.offset,
                    });
                }
                let declared_length = match (self.length, declared_length) {
                    (Some(length), Some(d)) if d != length => {
                        return Err(UploadError::LengthAlreadyKnown { length });
                    }
                    (Some(_), _) => None,
                    (None, Some(d)) if d > self.max_size => {
                        return Err(UploadError::TooLarge { max: self.max_size });
                    }
                    (None, d) => d,
                };
                let offset = self.offset.saturating_add(bytes);
                match declared_length.or(self.length) {
                    Some(length) if offset > length => {
                        return Err(UploadError::BeyondLength { length });
                    }
                    None if offset > self.max_size => {
                        return Err(UploadError::TooLarge { max: self.max_size });
                    }
                    _ => {}
                }
                if let Some(d) = declared_length
                    && d < self.offset
                {
                    return Err(UploadError::LengthBelowOffset {
                        declared: d,
                        offset: self.offset,
                    });
                }
                if bytes == 0 && declared_length.is_none() {
                    return Ok(vec![]);
                }
                let mut events = vec![UploadEvent::ChunkAccepted {
                    from_offset,
                    offset,
                    declared_length,
                    expires_at,
                }];
                if bytes > 0
                    && let Some(parts) = parts
                {
                    events.push(UploadEvent::PartsStored(parts));
                }
                if bytes > 0
                    && let Some(sha256_state) = sha256_state
                {
                    events.push(UploadEvent::Sha256Carried { sha256_state });
                }
                Ok(events)
            }
            UploadCommand::Complete {
                version_number,
                sha256,
            } => match self.status {
                // Completing is retried after crashes: the second time records nothing.
                UploadStatus::Completed => Ok(vec![]),
                // A direct upload's bytes never pass the API: the use case checked the
                // assembled object's size before the File command.
                UploadStatus::InProgress if self.is_full() || self.direct.is_some() => {
                    let target = self.target.ok_or(UploadError::NotFound)?;
                    Ok(vec![UploadEvent::UploadCompleted {
                        file_id: target.file_id,
                        version_number,
                        sha256,
                    }])
                }
                UploadStatus::InProgress => Err(UploadError::Incomplete),
                UploadStatus::Missing => Err(UploadError::NotFound),
                UploadStatus::Expired => Err(UploadError::Expired),
                UploadStatus::Terminated => Err(UploadError::Terminated),
            },
            UploadCommand::Expire { now } => match self.status {
                UploadStatus::Missing => Err(UploadError::NotFound),
                UploadStatus::InProgress if self.expires_at.is_some_and(|at| now >= at) => {
                    Ok(vec![UploadEvent::UploadExpired])
                }
                UploadStatus::InProgress => Err(UploadError::NotExpired),
                // Settled otherwise: nothing left to expire.
                UploadStatus::Completed | UploadStatus::Expired | UploadStatus::Terminated => {
                    Ok(vec![])
                }
            },
            UploadCommand::Terminate => match self.status {
                UploadStatus::Missing => Err(UploadError::NotFound),
                UploadStatus::InProgress => Ok(vec![UploadEvent::UploadTerminated]),
                UploadStatus::Terminated => Ok(vec![]),
                UploadStatus::Completed => Err(UploadError::Completed),
                UploadStatus::Expired => Err(UploadError::Expired),
            },
        }
    }
}

impl Aggregate for Upload {
    const TYPE: &'static str = "upload";
    type Command = UploadCommand;
    type Event = UploadEvent;
    type Error = UploadError;
    type Services = ();

    async fn handle(
        &mut self,
        command: UploadCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), UploadError> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: UploadEvent) {
        match event {
            UploadEvent::UploadStarted {
                owner_id,
                length,
                max_size,
                filename,
                filetype,
                target,
                temp_key,
                expires_at,
            } => {
                *self = Upload {
                    status: UploadStatus::InProgress,
                    owner_id: Some(owner_id),
                    length,
                    max_size,
                    offset: 0,
                    filename,
                    filetype,
                    target: Some(target),
                    temp_key,
                    expires_at: Some(expires_at),
                    completed: None,
                    multipart: None,
                    sha256_state: None,
                    direct: None,
                }
            }
            UploadEvent::ChunkAccepted {
                offset,
                declared_length,
                expires_at,
                ..
            } => {
                if offset != self.offset {
                    // New bytes: a carried hash, if any, follows in `Sha256Carried`.
                    self.sha256_state = None;
                }
                self.offset = offset;
                if declared_length.is_some() {
                    self.length = declared_length;
                }
                self.expires_at = Some(expires_at);
            }
            UploadEvent::UploadCompleted {
                file_id,
                version_number,
                ..
            } => {
                self.status = UploadStatus::Completed;
                self.completed = Some(CompletedAs {
                    file_id,
                    version_number,
                });
            }
            UploadEvent::UploadExpired => self.status = UploadStatus::Expired,
            UploadEvent::UploadTerminated => self.status = UploadStatus::Terminated,
            UploadEvent::MultipartOpened { multipart_id } => {
                self.multipart = Some(Multipart {
                    id: multipart_id,
                    ..Multipart::default()
                });
            }
            UploadEvent::DirectOpened(direct) => self.direct = Some(direct),
            UploadEvent::PartsStored(parts) => {
                if let Some(m) = self.multipart.as_mut() {
                    m.e_tags.truncate(parts.first_part as usize);
                    m.e_tags.extend(parts.e_tags);
                    m.tail = parts.tail;
                }
            }
            UploadEvent::Sha256Carried { sha256_state } => {
                self.sha256_state = Some(sha256_state);
            }
        }
    }
}
