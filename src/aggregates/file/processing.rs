//! The worker's commands on a version: each is a no-op when its effect is already
//! recorded, because jobs are delivered at least once.

use super::{File, FileCommand, FileError, FileEvent, FileStatus, Original};

impl File {
    /// The worker's commands. They apply to soft-deleted files too (a deleted file can
    /// be restored, and its versions should be finished by then), and each one is a
    /// no-op when its effect is already recorded: jobs run at least once.
    pub(super) fn decide_processing(
        &self,
        command: FileCommand,
    ) -> Result<Vec<FileEvent>, FileError> {
        let refuse = |status, action| Err(FileError::WrongStatus { status, action });
        match command {
            FileCommand::StartProcessing {
                version_number,
                attempt,
            } => {
                let v = self.version(version_number)?;
                if attempt == 0 {
                    return Err(FileError::Invalid {
                        field: "attempt",
                        reason: "attempts count from 1",
                    });
                }
                match v.status {
                    s if s.is_settled() => refuse(s, "start processing"),
                    FileStatus::Processing if attempt <= v.attempt => Ok(vec![]),
                    _ => Ok(vec![FileEvent::ProcessingStarted {
                        version_number,
                        attempt,
                    }]),
                }
            }
            FileCommand::RecordHash {
                version_number,
                sha256,
            } => {
                let v = self.version(version_number)?;
                if sha256 != v.sha256 {
                    return Err(FileError::Conflicting { what: "sha256" });
                }
                match v.status {
                    _ if v.verified_sha256.as_deref() == Some(sha256.as_str()) => Ok(vec![]),
                    FileStatus::Processing => Ok(vec![FileEvent::Hashed {
                        version_number,
                        sha256,
                    }]),
                    s => refuse(s, "record a hash"),
                }
            }
            FileCommand::RecordDuplicate {
                version_number,
                original,
            } => {
                let v = self.version(version_number)?;
                match &v.duplicate_of {
                    Some(o) if *o == original => return Ok(vec![]),
                    Some(_) => return Err(FileError::Conflicting { what: "original" }),
                    None => {}
                }
                if v.status != FileStatus::Processing {
                    return refuse(v.status, "record a duplicate");
                }
                if let Original::ThisFile {
                    version_number: earlier,
                } = original
                {
                    let o = self.version(earlier)?;
                    if o.status != FileStatus::Completed || o.sha256 != v.sha256 {
                        return Err(FileError::Invalid {
                            field: "original",
                            reason: "must be a completed version with the same bytes",
                        });
                    }
                }
                Ok(vec![FileEvent::DuplicateDetected {
                    version_number,
                    original,
                }])
            }
            FileCommand::FailVirusScan {
                version_number,
                signature,
            } => {
                let v = self.version(version_number)?;
                match v.status {
                    FileStatus::VirusFailed
                        if v.virus_signature.as_deref() == Some(signature.as_str()) =>
                    {
                        Ok(vec![])
                    }
                    FileStatus::Processing => Ok(vec![FileEvent::VirusFailed {
                        version_number,
                        signature,
                    }]),
                    s => refuse(s, "fail its virus scan"),
                }
            }
            FileCommand::FailProcessing {
                version_number,
                attempt,
                max_attempts,
                reason,
            } => {
                let v = self.version(version_number)?;
                if attempt <= v.failed_attempt {
                    return Ok(vec![]);
                }
                match v.status {
                    FileStatus::Processing => Ok(vec![FileEvent::ProcessingFailed {
                        version_number,
                        attempt,
                        reason,
                        last_attempt: attempt >= v.attempt_base + max_attempts,
                        max_attempts,
                    }]),
                    s => refuse(s, "fail processing"),
                }
            }
            FileCommand::RecordOptimized {
                version_number,
                variant,
            } => {
                let v = self.version(version_number)?;
                match v.variants.iter().find(|x| x.name == variant.name) {
                    Some(x) if *x == variant => return Ok(vec![]),
                    Some(_) => return Err(FileError::Conflicting { what: "variant" }),
                    None => {}
                }
                match v.status {
                    FileStatus::Processing => Ok(vec![FileEvent::Optimized {
                        version_number,
                        variant,
                    }]),
                    s => refuse(s, "record a variant"),
                }
            }
            FileCommand::Complete {
                version_number,
                result,
            } => {
                let v = self.version(version_number)?;
                if result.sha256 != v.sha256 {
                    return Err(FileError::Conflicting { what: "sha256" });
                }
                match v.status {
                    FileStatus::Completed if v.blob().as_ref() == Some(&result) => Ok(vec![]),
                    FileStatus::Completed => Err(FileError::Conflicting { what: "final blob" }),
                    FileStatus::Processing => Ok(vec![FileEvent::VersionCompleted {
                        version_number,
                        result,
                    }]),
                    s => refuse(s, "complete"),
                }
            }
            FileCommand::RetryProcessing { version_number } => {
                let v = self.version(version_number)?;
                match v.status {
                    FileStatus::Failed => Ok(vec![FileEvent::ProcessingRetried { version_number }]),
                    s => refuse(s, "retry processing"),
                }
            }
            _ => unreachable!("decide handles every other command"),
        }
    }
}
