//! Given / when / then over File events.

use super::*;
use crate::ids::FileId;
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
fn untagging_a_name_no_tag_can_have_is_refused_not_a_no_op() {
    Given::with(())
        .given(vec![created(), FileEvent::Tagged { tag: "x".into() }])
        .when(FileCommand::Untag { tag: "y".into() })
        .then_expect_events(vec![]);
    Given::with(())
        .given(vec![created()])
        .when(FileCommand::Untag {
            tag: "null,null".into(),
        })
        .then_expect_error(FileError::Invalid {
            field: "tag",
            reason: "may contain ASCII letters and digits, '-', '_' and '.' only",
        });
    // A tag the file has goes, whatever the rule says today.
    Given::with(())
        .given(vec![
            created(),
            FileEvent::Tagged {
                tag: "old,tag".into(),
            },
        ])
        .when(FileCommand::Untag {
            tag: "old,tag".into(),
        })
        .then_expect_events(vec![FileEvent::Untagged {
            tag: "old,tag".into(),
        }]);
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

// Version lifecycle.

fn uploaded(n: u32, sha: &str) -> FileEvent {
    FileEvent::Uploaded {
        version_number: n,
        version: NewVersion {
            filename: "a.txt".into(),
            declared_mime: "text/plain".into(),
            size_bytes: 5,
            temp_location: format!("tmp/{n}"),
            sha256: sha.into(),
        },
    }
}

fn started(n: u32, attempt: u32) -> FileEvent {
    FileEvent::ProcessingStarted {
        version_number: n,
        attempt,
    }
}

fn blob(sha: &str) -> FinalBlob {
    FinalBlob {
        storage_key: format!("blobs/{sha}"),
        size_bytes: 5,
        sha256: sha.into(),
        detected_mime: "text/plain".into(),
    }
}

fn completed(n: u32, sha: &str) -> FileEvent {
    FileEvent::VersionCompleted {
        version_number: n,
        result: blob(sha),
    }
}

fn complete(n: u32, sha: &str) -> FileCommand {
    FileCommand::Complete {
        version_number: n,
        result: blob(sha),
    }
}

fn state(events: Vec<FileEvent>) -> File {
    let mut file = File::default();
    for e in events {
        file.apply(e);
    }
    file
}

#[test]
fn a_version_walks_uploaded_processing_completed() {
    let file = state(vec![created(), uploaded(1, "aa")]);
    assert_eq!(file.versions[0].status, FileStatus::Uploaded);
    Given::with(())
        .given(vec![created(), uploaded(1, "aa")])
        .when(FileCommand::StartProcessing {
            version_number: 1,
            attempt: 1,
        })
        .then_expect_events(vec![started(1, 1)]);
    Given::with(())
        .given(vec![created(), uploaded(1, "aa"), started(1, 1)])
        .when(complete(1, "aa"))
        .then_expect_events(vec![completed(1, "aa")]);
    let file = state(vec![
        created(),
        uploaded(1, "aa"),
        started(1, 1),
        completed(1, "aa"),
    ]);
    let v = &file.versions[0];
    assert_eq!(v.status, FileStatus::Completed);
    assert_eq!(v.storage_key.as_deref(), Some("blobs/aa"));
    assert_eq!(v.temp_location, None, "temp bytes are no longer referenced");
    assert_eq!(file.current_version().map(|v| v.number), Some(1));
}

#[test]
fn completing_a_version_that_was_never_started_is_refused() {
    Given::with(())
        .given(vec![created(), uploaded(1, "aa")])
        .when(complete(1, "aa"))
        .then_expect_error(FileError::WrongStatus {
            status: FileStatus::Uploaded,
            action: "complete",
        });
}

#[test]
fn a_second_identical_completion_is_a_no_op() {
    Given::with(())
        .given(vec![
            created(),
            uploaded(1, "aa"),
            started(1, 1),
            completed(1, "aa"),
        ])
        .when(complete(1, "aa"))
        .then_expect_events(vec![]);
}

#[test]
fn a_different_completion_of_a_completed_version_is_a_conflict() {
    let mut other = blob("aa");
    other.storage_key = "blobs/elsewhere".into();
    Given::with(())
        .given(vec![
            created(),
            uploaded(1, "aa"),
            started(1, 1),
            completed(1, "aa"),
        ])
        .when(FileCommand::Complete {
            version_number: 1,
            result: other,
        })
        .then_expect_error(FileError::Conflicting { what: "final blob" });
}

#[test]
fn a_final_blob_with_other_bytes_than_uploaded_is_refused() {
    Given::with(())
        .given(vec![created(), uploaded(1, "aa"), started(1, 1)])
        .when(complete(1, "bb"))
        .then_expect_error(FileError::Conflicting { what: "sha256" });
}

#[test]
fn an_infected_version_is_virus_failed_and_never_completes() {
    let infected = FileEvent::VirusFailed {
        version_number: 1,
        signature: "Eicar-Test-Signature".into(),
    };
    Given::with(())
        .given(vec![created(), uploaded(1, "aa"), started(1, 1)])
        .when(FileCommand::FailVirusScan {
            version_number: 1,
            signature: "Eicar-Test-Signature".into(),
        })
        .then_expect_events(vec![infected.clone()]);
    Given::with(())
        .given(vec![
            created(),
            uploaded(1, "aa"),
            started(1, 1),
            infected.clone(),
        ])
        .when(complete(1, "aa"))
        .then_expect_error(FileError::WrongStatus {
            status: FileStatus::VirusFailed,
            action: "complete",
        });
    // The scan job redelivered: nothing new.
    Given::with(())
        .given(vec![
            created(),
            uploaded(1, "aa"),
            started(1, 1),
            infected.clone(),
        ])
        .when(FileCommand::FailVirusScan {
            version_number: 1,
            signature: "Eicar-Test-Signature".into(),
        })
        .then_expect_events(vec![]);
    Given::with(())
        .given(vec![created(), uploaded(1, "aa"), started(1, 1), infected])
        .when(FileCommand::StartProcessing {
            version_number: 1,
            attempt: 2,
        })
        .then_expect_error(FileError::WrongStatus {
            status: FileStatus::VirusFailed,
            action: "start processing",
        });
}

#[test]
fn the_same_bytes_as_this_files_completed_version_make_a_duplicate() {
    let history = vec![
        created(),
        uploaded(1, "aa"),
        started(1, 1),
        completed(1, "aa"),
        uploaded(2, "aa"),
        started(2, 1),
    ];
    let dup = FileEvent::DuplicateDetected {
        version_number: 2,
        original: Original::ThisFile { version_number: 1 },
    };
    Given::with(())
        .given(history.clone())
        .when(FileCommand::RecordDuplicate {
            version_number: 2,
            original: Original::ThisFile { version_number: 1 },
        })
        .then_expect_events(vec![dup.clone()]);
    let mut after = history.clone();
    after.push(dup);
    let file = state(after.clone());
    assert_eq!(file.versions[1].status, FileStatus::Duplicate);
    assert_eq!(file.current_version().map(|v| v.number), Some(1));
    Given::with(())
        .given(after)
        .when(complete(2, "aa"))
        .then_expect_error(FileError::WrongStatus {
            status: FileStatus::Duplicate,
            action: "complete",
        });
}

#[test]
fn a_duplicate_must_name_a_completed_version_with_the_same_bytes() {
    Given::with(())
        .given(vec![
            created(),
            uploaded(1, "aa"),
            started(1, 1),
            completed(1, "aa"),
            uploaded(2, "bb"),
            started(2, 1),
        ])
        .when(FileCommand::RecordDuplicate {
            version_number: 2,
            original: Original::ThisFile { version_number: 1 },
        })
        .then_expect_error(FileError::Invalid {
            field: "original",
            reason: "must be a completed version with the same bytes",
        });
}

#[test]
fn another_files_original_is_recorded_and_processing_goes_on() {
    let original = Original::OtherFile {
        file_id: FileId(uuid::Uuid::nil()),
        version_number: 3,
    };
    let dup = FileEvent::DuplicateDetected {
        version_number: 1,
        original: original.clone(),
    };
    let file = state(vec![
        created(),
        uploaded(1, "aa"),
        started(1, 1),
        dup.clone(),
    ]);
    assert_eq!(file.versions[0].status, FileStatus::Processing);
    assert_eq!(file.versions[0].duplicate_of, Some(original));
    Given::with(())
        .given(vec![created(), uploaded(1, "aa"), started(1, 1), dup])
        .when(complete(1, "aa"))
        .then_expect_events(vec![completed(1, "aa")]);
}

#[test]
fn failures_queue_a_retry_until_the_last_attempt_fails() {
    let fail = |attempt| FileCommand::FailProcessing {
        version_number: 1,
        attempt,
        max_attempts: 3,
        reason: "scanner unreachable".into(),
    };
    let failed = |attempt, last_attempt| FileEvent::ProcessingFailed {
        version_number: 1,
        attempt,
        reason: "scanner unreachable".into(),
        last_attempt,
        max_attempts: 3,
    };
    Given::with(())
        .given(vec![created(), uploaded(1, "aa"), started(1, 1)])
        .when(fail(1))
        .then_expect_events(vec![failed(1, false)]);
    let retry = vec![
        created(),
        uploaded(1, "aa"),
        started(1, 1),
        failed(1, false),
    ];
    assert_eq!(state(retry.clone()).versions[0].status, FileStatus::Queued);
    // The failure reported twice (at-least-once): nothing new.
    Given::with(())
        .given(retry.clone())
        .when(fail(1))
        .then_expect_events(vec![]);
    let mut last = retry;
    last.extend([started(1, 2), failed(2, false), started(1, 3)]);
    Given::with(())
        .given(last.clone())
        .when(fail(3))
        .then_expect_events(vec![failed(3, true)]);
    last.push(failed(3, true));
    assert_eq!(state(last.clone()).versions[0].status, FileStatus::Failed);
    Given::with(())
        .given(last)
        .when(FileCommand::StartProcessing {
            version_number: 1,
            attempt: 4,
        })
        .then_expect_error(FileError::WrongStatus {
            status: FileStatus::Failed,
            action: "start processing",
        });
}

#[test]
fn a_redelivered_start_hash_or_variant_changes_nothing() {
    let hashed = FileEvent::Hashed {
        version_number: 1,
        sha256: "aa".into(),
    };
    let thumb = Variant {
        name: "thumbnail".into(),
        storage_key: "blobs/aa.thumb".into(),
        mime_type: "image/webp".into(),
        size_bytes: 1,
    };
    let optimized = FileEvent::Optimized {
        version_number: 1,
        variant: thumb.clone(),
    };
    let history = vec![
        created(),
        uploaded(1, "aa"),
        started(1, 1),
        hashed.clone(),
        optimized,
    ];
    Given::with(())
        .given(history.clone())
        .when(FileCommand::StartProcessing {
            version_number: 1,
            attempt: 1,
        })
        .then_expect_events(vec![]);
    Given::with(())
        .given(history.clone())
        .when(FileCommand::RecordHash {
            version_number: 1,
            sha256: "aa".into(),
        })
        .then_expect_events(vec![]);
    Given::with(())
        .given(history)
        .when(FileCommand::RecordOptimized {
            version_number: 1,
            variant: thumb,
        })
        .then_expect_events(vec![]);
    Given::with(())
        .given(vec![created(), uploaded(1, "aa"), started(1, 1)])
        .when(FileCommand::RecordHash {
            version_number: 1,
            sha256: "aa".into(),
        })
        .then_expect_events(vec![hashed]);
}

#[test]
fn a_hash_that_differs_from_the_upload_is_refused() {
    Given::with(())
        .given(vec![created(), uploaded(1, "aa"), started(1, 1)])
        .when(FileCommand::RecordHash {
            version_number: 1,
            sha256: "bb".into(),
        })
        .then_expect_error(FileError::Conflicting { what: "sha256" });
}

#[test]
fn restoring_a_version_points_a_new_version_at_the_old_blob() {
    Given::with(())
        .given(vec![
            created(),
            uploaded(1, "aa"),
            started(1, 1),
            completed(1, "aa"),
            uploaded(2, "bb"),
        ])
        .when(FileCommand::RestoreVersion { version_number: 1 })
        .then_expect_events(vec![FileEvent::VersionRestored {
            version_number: 3,
            from_version: 1,
            filename: "a.txt".into(),
            blob: blob("aa"),
        }]);
    Given::with(())
        .given(vec![created(), uploaded(1, "aa")])
        .when(FileCommand::RestoreVersion { version_number: 1 })
        .then_expect_error(FileError::WrongStatus {
            status: FileStatus::Uploaded,
            action: "restore it",
        });
}

#[test]
fn a_purged_file_refuses_everything_but_a_repeated_purge() {
    let purged = vec![
        created(),
        uploaded(1, "aa"),
        started(1, 1),
        FileEvent::Purged,
    ];
    Given::with(())
        .given(purged.clone())
        .when(complete(1, "aa"))
        .then_expect_error(FileError::Purged);
    Given::with(())
        .given(purged.clone())
        .when(FileCommand::Restore)
        .then_expect_error(FileError::Purged);
    Given::with(())
        .given(purged)
        .when(FileCommand::Purge)
        .then_expect_events(vec![]);
    Given::with(())
        .given(vec![created(), FileEvent::Deleted])
        .when(FileCommand::Purge)
        .then_expect_events(vec![FileEvent::Purged]);
}

#[test]
fn the_worker_may_finish_a_version_of_a_soft_deleted_file() {
    Given::with(())
        .given(vec![
            created(),
            uploaded(1, "aa"),
            started(1, 1),
            FileEvent::Deleted,
        ])
        .when(complete(1, "aa"))
        .then_expect_events(vec![completed(1, "aa")]);
}

#[test]
fn every_event_is_version_1() {
    use cqrs_es::DomainEvent;
    for e in [created(), uploaded(1, "aa"), FileEvent::Purged] {
        assert_eq!(e.event_version(), "1");
    }
}

#[test]
fn create_with_upload_commits_file_version_and_tags_together() {
    let version = NewVersion {
        filename: "a.txt".into(),
        declared_mime: "text/plain".into(),
        size_bytes: 3,
        temp_location: "tmp/t/u".into(),
        sha256: "aa".into(),
    };
    Given::with(())
        .given_no_previous_events()
        .when(FileCommand::CreateWithUpload {
            owner_id: UserId(uuid::Uuid::nil()),
            display_name: "a.txt".into(),
            tags: vec!["b".into(), "a".into(), "b".into()],
            version: version.clone(),
        })
        .then_expect_events(vec![
            created(),
            FileEvent::Uploaded {
                version_number: 1,
                version,
            },
            FileEvent::Tagged { tag: "a".into() },
            FileEvent::Tagged { tag: "b".into() },
        ]);
}

#[test]
fn create_with_upload_refuses_a_bad_tag_and_an_existing_file() {
    let cmd = |tag: &str| FileCommand::CreateWithUpload {
        owner_id: UserId(uuid::Uuid::nil()),
        display_name: "a.txt".into(),
        tags: vec![tag.into()],
        version: NewVersion {
            filename: "a.txt".into(),
            declared_mime: "text/plain".into(),
            size_bytes: 3,
            temp_location: "tmp/t/u".into(),
            sha256: "aa".into(),
        },
    };
    assert!(matches!(
        state(vec![]).decide(cmd("no spaces")),
        Err(FileError::Invalid { field: "tag", .. })
    ));
    assert_eq!(
        state(vec![created()]).decide(cmd("ok")),
        Err(FileError::AlreadyExists)
    );
}

#[test]
fn an_operator_retry_grants_a_fresh_budget_of_attempts() {
    let fail = |attempt| FileCommand::FailProcessing {
        version_number: 1,
        attempt,
        max_attempts: 2,
        reason: "scanner unreachable".into(),
    };
    let failed = |attempt, last_attempt| FileEvent::ProcessingFailed {
        version_number: 1,
        attempt,
        reason: "scanner unreachable".into(),
        last_attempt,
        max_attempts: 2,
    };
    let dead = vec![
        created(),
        uploaded(1, "aa"),
        started(1, 1),
        failed(1, false),
        started(1, 2),
        failed(2, true),
    ];
    assert_eq!(state(dead.clone()).versions[0].status, FileStatus::Failed);
    // Only a failed version can be retried.
    assert!(matches!(
        state(vec![created(), uploaded(1, "aa")])
            .decide(FileCommand::RetryProcessing { version_number: 1 }),
        Err(FileError::WrongStatus { .. })
    ));
    let mut retried = dead.clone();
    retried.push(FileEvent::ProcessingRetried { version_number: 1 });
    Given::with(())
        .given(dead)
        .when(FileCommand::RetryProcessing { version_number: 1 })
        .then_expect_events(vec![FileEvent::ProcessingRetried { version_number: 1 }]);
    assert_eq!(
        state(retried.clone()).versions[0].status,
        FileStatus::Queued
    );
    // Attempt 3 is the first of the new budget of 2: not the last one.
    retried.push(started(1, 3));
    Given::with(())
        .given(retried.clone())
        .when(fail(3))
        .then_expect_events(vec![failed(3, false)]);
    retried.push(failed(3, false));
    retried.push(started(1, 4));
    Given::with(())
        .given(retried)
        .when(fail(4))
        .then_expect_events(vec![failed(4, true)]);
}

#[test]
fn tags_are_ascii_as_the_document_says() {
    Given::with(())
        .given(vec![created()])
        .when(FileCommand::Tag {
            tag: "café".into()
        })
        .then_expect_error(FileError::Invalid {
            field: "tag",
            reason: "may contain ASCII letters and digits, '-', '_' and '.' only",
        });
    Given::with(())
        .given(vec![created()])
        .when(FileCommand::Tag {
            tag: "Q3_report-v2.1".into(),
        })
        .then_expect_events(vec![FileEvent::Tagged {
            tag: "Q3_report-v2.1".into(),
        }]);
}
