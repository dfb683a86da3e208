//! Version retention: keep the newest N completed versions of a file, prune the settled
//! versions older than them. The rule lives here, not in SQL, so the read tables only
//! follow what the log decided.

use super::{File, FileError, FileEvent, FileStatus};

impl File {
    /// `VersionPruned` for every settled, not yet pruned version older than the
    /// `keep`-th newest completed one. Versions still being processed are left alone
    /// (a later run prunes them once settled); a file with `keep` or fewer completed
    /// versions loses nothing. Repeating the command decides no events.
    pub(super) fn decide_prune(&self, keep: u32) -> Result<Vec<FileEvent>, FileError> {
        if !self.exists {
            return Err(FileError::NotFound);
        }
        // A legal hold keeps every version (and so its bytes) until it is released.
        self.not_held()?;
        if keep == 0 {
            // The current version is never pruned: a file keeps at least one.
            return Err(FileError::Invalid {
                field: "keep",
                reason: "must be at least 1",
            });
        }
        let cutoff = self
            .versions
            .iter()
            .rev()
            .filter(|v| v.status == FileStatus::Completed && !v.pruned)
            .nth(keep as usize - 1)
            .map(|v| v.number);
        let Some(cutoff) = cutoff else {
            return Ok(vec![]);
        };
        Ok(self
            .versions
            .iter()
            .filter(|v| v.number < cutoff && !v.pruned && v.status.is_settled())
            .map(|v| FileEvent::VersionPruned {
                version_number: v.number,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::super::{FileCommand, FinalBlob, NewVersion};
    use super::*;
    use crate::ids::UserId;

    type Given = TestFramework<File>;

    fn created() -> FileEvent {
        FileEvent::FileCreated {
            owner_id: UserId(uuid::Uuid::nil()),
            display_name: "a.txt".into(),
        }
    }

    fn uploaded(n: u32) -> FileEvent {
        FileEvent::Uploaded {
            version_number: n,
            version: NewVersion {
                filename: "a.txt".into(),
                declared_mime: "text/plain".into(),
                size_bytes: 1,
                temp_location: format!("tmp/t/{n}"),
                sha256: format!("{n:064}"),
            },
        }
    }

    fn completed(n: u32) -> Vec<FileEvent> {
        vec![
            uploaded(n),
            FileEvent::ProcessingStarted {
                version_number: n,
                attempt: 1,
            },
            FileEvent::VersionCompleted {
                version_number: n,
                result: FinalBlob {
                    storage_key: format!("blobs/t/00/{n:064}"),
                    size_bytes: 1,
                    sha256: format!("{n:064}"),
                    detected_mime: "text/plain".into(),
                },
            },
        ]
    }

    fn virus_failed(n: u32) -> Vec<FileEvent> {
        vec![
            uploaded(n),
            FileEvent::ProcessingStarted {
                version_number: n,
                attempt: 1,
            },
            FileEvent::VirusFailed {
                version_number: n,
                signature: "Eicar".into(),
            },
        ]
    }

    fn history(parts: Vec<Vec<FileEvent>>) -> Vec<FileEvent> {
        let mut events = vec![created()];
        events.extend(parts.into_iter().flatten());
        events
    }

    fn pruned(n: u32) -> FileEvent {
        FileEvent::VersionPruned { version_number: n }
    }

    #[test]
    fn prunes_settled_versions_older_than_the_newest_completed_ones() {
        // v1 completed, v2 virus_failed, v3 and v4 completed, v5 still uploading.
        let given = history(vec![
            completed(1),
            virus_failed(2),
            completed(3),
            completed(4),
            vec![uploaded(5)],
        ]);
        Given::with(())
            .given(given.clone())
            .when(FileCommand::PruneVersions { keep: 2 })
            .then_expect_events(vec![pruned(1), pruned(2)]);
        Given::with(())
            .given(given)
            .when(FileCommand::PruneVersions { keep: 1 })
            .then_expect_events(vec![pruned(1), pruned(2), pruned(3)]);
    }

    #[test]
    fn pruning_again_or_with_few_versions_changes_nothing() {
        let mut given = history(vec![completed(1), completed(2)]);
        Given::with(())
            .given(given.clone())
            .when(FileCommand::PruneVersions { keep: 2 })
            .then_expect_events(vec![]);
        given.push(pruned(1));
        Given::with(())
            .given(given)
            .when(FileCommand::PruneVersions { keep: 1 })
            .then_expect_events(vec![]);
    }

    #[test]
    fn an_unsettled_old_version_waits_until_it_settles() {
        // v1 is still processing when v2 and v3 complete: not pruned yet.
        let given = history(vec![vec![uploaded(1)], completed(2), completed(3)]);
        Given::with(())
            .given(given)
            .when(FileCommand::PruneVersions { keep: 1 })
            .then_expect_events(vec![pruned(2)]);
    }

    #[test]
    fn a_pruned_version_is_gone_for_downloads_restores_and_the_worker() {
        let mut events = history(vec![completed(1), completed(2)]);
        events.push(pruned(1));
        let mut file = File::default();
        for e in events.clone() {
            cqrs_es::Aggregate::apply(&mut file, e);
        }
        assert_eq!(file.current_version().map(|v| v.number), Some(2));
        assert!(file.versions[0].pruned);
        Given::with(())
            .given(events.clone())
            .when(FileCommand::RestoreVersion { version_number: 1 })
            .then_expect_error(FileError::VersionNotFound);
        Given::with(())
            .given(events)
            .when(FileCommand::RetryProcessing { version_number: 1 })
            .then_expect_error(FileError::VersionNotFound);
    }

    #[test]
    fn keeping_zero_versions_is_refused_and_a_missing_file_is_not_found() {
        Given::with(())
            .given(history(vec![completed(1)]))
            .when(FileCommand::PruneVersions { keep: 0 })
            .then_expect_error(FileError::Invalid {
                field: "keep",
                reason: "must be at least 1",
            });
        Given::with(())
            .given_no_previous_events()
            .when(FileCommand::PruneVersions { keep: 1 })
            .then_expect_error(FileError::NotFound);
    }

    #[test]
    fn a_purged_file_is_not_pruned() {
        let mut given = history(vec![completed(1), completed(2)]);
        given.push(FileEvent::Purged);
        Given::with(())
            .given(given)
            .when(FileCommand::PruneVersions { keep: 1 })
            .then_expect_error(FileError::Purged);
    }
}
