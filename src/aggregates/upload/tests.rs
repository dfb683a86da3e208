//! Given / when / then over Upload events.

use chrono::{Duration, TimeZone};
use cqrs_es::test::TestFramework;
use uuid::Uuid;

use super::*;

type Given = TestFramework<Upload>;

fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap()
}

fn target() -> UploadTarget {
    UploadTarget {
        file_id: FileId(Uuid::from_u128(7)),
        new_file: true,
    }
}

fn started(length: Option<u64>) -> UploadEvent {
    UploadEvent::UploadStarted {
        owner_id: UserId(Uuid::from_u128(1)),
        length,
        max_size: 1000,
        filename: "a.bin".into(),
        filetype: "application/octet-stream".into(),
        target: target(),
        temp_key: "tmp/t/u".into(),
        expires_at: t(100),
    }
}

fn chunk(from: u64, bytes: u64) -> UploadCommand {
    UploadCommand::AcceptChunk {
        from_offset: from,
        bytes,
        declared_length: None,
        now: t(10),
        expires_at: t(200),
        parts: None,
        sha256_state: None,
    }
}

fn accepted(from: u64, offset: u64) -> UploadEvent {
    UploadEvent::ChunkAccepted {
        from_offset: from,
        offset,
        declared_length: None,
        expires_at: t(200),
    }
}

#[test]
fn chunks_advance_the_offset_and_push_the_expiry() {
    Given::with(())
        .given(vec![started(Some(10))])
        .when(chunk(0, 4))
        .then_expect_events(vec![accepted(0, 4)]);
    let mut upload = Upload::default();
    upload.apply(started(Some(10)));
    upload.apply(accepted(0, 4));
    assert_eq!((upload.offset, upload.expires_at), (4, Some(t(200))));
}

#[test]
fn a_chunk_at_the_wrong_offset_is_a_mismatch() {
    Given::with(())
        .given(vec![started(Some(10)), accepted(0, 4)])
        .when(chunk(0, 4))
        .then_expect_error(UploadError::OffsetMismatch { expected: 4 });
}

#[test]
fn a_chunk_past_the_length_is_refused() {
    Given::with(())
        .given(vec![started(Some(10)), accepted(0, 4)])
        .when(chunk(4, 7))
        .then_expect_error(UploadError::BeyondLength { length: 10 });
}

#[test]
fn an_empty_chunk_records_nothing() {
    Given::with(())
        .given(vec![started(Some(10))])
        .when(chunk(0, 0))
        .then_expect_events(vec![]);
}

#[test]
fn an_expired_upload_takes_no_chunk_even_before_the_job_ran() {
    let late = UploadCommand::AcceptChunk {
        from_offset: 0,
        bytes: 1,
        declared_length: None,
        now: t(100),
        expires_at: t(300),
        parts: None,
        sha256_state: None,
    };
    Given::with(())
        .given(vec![started(Some(10))])
        .when(late)
        .then_expect_error(UploadError::Expired);
}

#[test]
fn a_deferred_length_is_declared_once_and_bounded_by_the_limit() {
    let declare = |length| UploadCommand::AcceptChunk {
        from_offset: 3,
        bytes: 2,
        declared_length: Some(length),
        now: t(10),
        expires_at: t(200),
        parts: None,
        sha256_state: None,
    };
    Given::with(())
        .given(vec![started(None), accepted(0, 3)])
        .when(declare(5))
        .then_expect_events(vec![UploadEvent::ChunkAccepted {
            from_offset: 3,
            offset: 5,
            declared_length: Some(5),
            expires_at: t(200),
        }]);
    Given::with(())
        .given(vec![started(None), accepted(0, 3)])
        .when(declare(1001))
        .then_expect_error(UploadError::TooLarge { max: 1000 });
    Given::with(())
        .given(vec![started(None), accepted(0, 3)])
        .when(declare(4))
        .then_expect_error(UploadError::BeyondLength { length: 4 });
    // Known lengths never change.
    Given::with(())
        .given(vec![started(Some(10)), accepted(0, 3)])
        .when(declare(9))
        .then_expect_error(UploadError::LengthAlreadyKnown { length: 10 });
    // Without a length the limit still holds.
    Given::with(())
        .given(vec![started(None)])
        .when(chunk(0, 1001))
        .then_expect_error(UploadError::TooLarge { max: 1000 });
}

#[test]
fn a_declared_length_is_applied() {
    let mut upload = Upload::default();
    upload.apply(started(None));
    upload.apply(UploadEvent::ChunkAccepted {
        from_offset: 0,
        offset: 5,
        declared_length: Some(5),
        expires_at: t(200),
    });
    assert!(upload.is_full());
}

#[test]
fn completion_needs_every_byte_and_is_idempotent() {
    let complete = || UploadCommand::Complete {
        version_number: 1,
        sha256: "ab".into(),
    };
    Given::with(())
        .given(vec![started(Some(10)), accepted(0, 4)])
        .when(complete())
        .then_expect_error(UploadError::Incomplete);
    let done = UploadEvent::UploadCompleted {
        file_id: target().file_id,
        version_number: 1,
        sha256: "ab".into(),
    };
    Given::with(())
        .given(vec![started(Some(10)), accepted(0, 10)])
        .when(complete())
        .then_expect_events(vec![done.clone()]);
    Given::with(())
        .given(vec![started(Some(10)), accepted(0, 10), done.clone()])
        .when(complete())
        .then_expect_events(vec![]);
    Given::with(())
        .given(vec![started(Some(10)), accepted(0, 10), done])
        .when(chunk(10, 1))
        .then_expect_error(UploadError::Completed);
}

#[test]
fn expiry_only_after_the_deadline_and_only_unfinished_uploads() {
    Given::with(())
        .given(vec![started(Some(10))])
        .when(UploadCommand::Expire { now: t(99) })
        .then_expect_error(UploadError::NotExpired);
    Given::with(())
        .given(vec![started(Some(10))])
        .when(UploadCommand::Expire { now: t(100) })
        .then_expect_events(vec![UploadEvent::UploadExpired]);
    // Activity pushed the deadline to t(200).
    Given::with(())
        .given(vec![started(Some(10)), accepted(0, 4)])
        .when(UploadCommand::Expire { now: t(150) })
        .then_expect_error(UploadError::NotExpired);
    Given::with(())
        .given(vec![started(Some(10)), UploadEvent::UploadTerminated])
        .when(UploadCommand::Expire {
            now: t(0) + Duration::days(9),
        })
        .then_expect_events(vec![]);
    Given::with(())
        .given(vec![started(Some(10)), UploadEvent::UploadExpired])
        .when(chunk(0, 1))
        .then_expect_error(UploadError::Expired);
}

#[test]
fn termination_ends_an_unfinished_upload_only() {
    Given::with(())
        .given(vec![started(Some(10)), accepted(0, 4)])
        .when(UploadCommand::Terminate)
        .then_expect_events(vec![UploadEvent::UploadTerminated]);
    Given::with(())
        .given(vec![started(Some(10)), UploadEvent::UploadTerminated])
        .when(chunk(0, 1))
        .then_expect_error(UploadError::Terminated);
    Given::with(())
        .given_no_previous_events()
        .when(UploadCommand::Terminate)
        .then_expect_error(UploadError::NotFound);
}

#[test]
fn starting_twice_or_too_large_is_refused() {
    let start = |length| UploadCommand::Start {
        owner_id: UserId(Uuid::from_u128(1)),
        length,
        max_size: 1000,
        filename: "a.bin".into(),
        filetype: "application/octet-stream".into(),
        target: target(),
        temp_key: "tmp/t/u".into(),
        expires_at: t(100),
        multipart_id: None,
        direct: None,
    };
    Given::with(())
        .given_no_previous_events()
        .when(start(Some(10)))
        .then_expect_events(vec![started(Some(10))]);
    Given::with(())
        .given(vec![started(Some(10))])
        .when(start(Some(10)))
        .then_expect_error(UploadError::AlreadyExists);
    Given::with(())
        .given_no_previous_events()
        .when(start(Some(1001)))
        .then_expect_error(UploadError::TooLarge { max: 1000 });
}

fn stored(first_part: u32, e_tags: &[&str], tail: Option<(&str, u64)>) -> StoredParts {
    StoredParts {
        first_part,
        e_tags: e_tags.iter().map(|t| t.to_string()).collect(),
        tail: tail.map(|(key, length)| Tail {
            key: key.into(),
            length,
        }),
    }
}

#[test]
fn s3_mode_records_the_multipart_id_with_the_start() {
    let start = UploadCommand::Start {
        owner_id: UserId(Uuid::from_u128(1)),
        length: Some(10),
        max_size: 1000,
        filename: "a.bin".into(),
        filetype: "application/octet-stream".into(),
        target: target(),
        temp_key: "tmp/t/u".into(),
        expires_at: t(100),
        multipart_id: Some("mp-1".into()),
        direct: None,
    };
    Given::with(())
        .given_no_previous_events()
        .when(start)
        .then_expect_events(vec![
            started(Some(10)),
            UploadEvent::MultipartOpened {
                multipart_id: "mp-1".into(),
            },
        ]);
}

#[test]
fn s3_mode_records_parts_with_the_chunk_but_not_for_a_length_only_patch() {
    let with_parts = |bytes, parts| UploadCommand::AcceptChunk {
        from_offset: 0,
        bytes,
        declared_length: None,
        now: t(10),
        expires_at: t(200),
        parts: Some(parts),
        sha256_state: None,
    };
    let opened = UploadEvent::MultipartOpened {
        multipart_id: "mp-1".into(),
    };
    Given::with(())
        .given(vec![started(Some(10)), opened.clone()])
        .when(with_parts(4, stored(0, &["a"], Some(("k/4", 1)))))
        .then_expect_events(vec![
            accepted(0, 4),
            UploadEvent::PartsStored(stored(0, &["a"], Some(("k/4", 1)))),
        ]);
    Given::with(())
        .given(vec![started(Some(10)), opened])
        .when(with_parts(0, stored(0, &[], None)))
        .then_expect_events(vec![]);
}

#[test]
fn parts_replace_from_their_first_number_and_the_tail_follows_the_last_chunk() {
    let mut upload = Upload::default();
    for event in [
        started(Some(10)),
        UploadEvent::MultipartOpened {
            multipart_id: "mp-1".into(),
        },
        UploadEvent::PartsStored(stored(0, &["a", "b"], Some(("k/5", 1)))),
        UploadEvent::PartsStored(stored(2, &["c"], None)),
    ] {
        upload.apply(event);
    }
    let m = upload.multipart.clone().unwrap();
    assert_eq!((m.id.as_str(), m.e_tags.len(), m.tail), ("mp-1", 3, None));
    upload.apply(UploadEvent::PartsStored(stored(
        1,
        &["x"],
        Some(("k/9", 2)),
    )));
    let m = upload.multipart.unwrap();
    assert_eq!(m.e_tags, vec!["a".to_string(), "x".to_string()]);
    assert_eq!(m.tail.unwrap().key, "k/9");
}

#[test]
fn a_carried_sha256_is_recorded_with_its_chunk_and_forgotten_by_one_without() {
    let with_state = |from, bytes, state: &str| UploadCommand::AcceptChunk {
        from_offset: from,
        bytes,
        declared_length: None,
        now: t(10),
        expires_at: t(200),
        parts: None,
        sha256_state: Some(state.into()),
    };
    Given::with(())
        .given(vec![started(Some(10))])
        .when(with_state(0, 4, "s4"))
        .then_expect_events(vec![
            accepted(0, 4),
            UploadEvent::Sha256Carried {
                sha256_state: "s4".into(),
            },
        ]);
    // A PATCH that only declares the length adds no bytes: nothing to carry.
    let declare_only = UploadCommand::AcceptChunk {
        from_offset: 0,
        bytes: 0,
        declared_length: Some(10),
        now: t(10),
        expires_at: t(200),
        parts: None,
        sha256_state: Some("s0".into()),
    };
    Given::with(())
        .given(vec![started(None)])
        .when(declare_only)
        .then_expect_events(vec![UploadEvent::ChunkAccepted {
            from_offset: 0,
            offset: 0,
            declared_length: Some(10),
            expires_at: t(200),
        }]);

    let mut upload = Upload::default();
    upload.apply(started(Some(10)));
    upload.apply(accepted(0, 4));
    upload.apply(UploadEvent::Sha256Carried {
        sha256_state: "s4".into(),
    });
    assert_eq!(upload.sha256_state.as_deref(), Some("s4"));
    // Bytes without a carried state: the old state no longer covers the offset.
    upload.apply(accepted(4, 6));
    assert_eq!(upload.sha256_state, None);
}

fn direct() -> Direct {
    Direct {
        sha256: "ab".repeat(32),
        part_size: 8,
        parts: 2,
    }
}

fn direct_history() -> Vec<UploadEvent> {
    vec![
        started(Some(10)),
        UploadEvent::MultipartOpened {
            multipart_id: "mp-1".into(),
        },
        UploadEvent::DirectOpened(direct()),
    ]
}

#[test]
fn a_direct_upload_records_what_the_client_declared() {
    let start = UploadCommand::Start {
        owner_id: UserId(Uuid::from_u128(1)),
        length: Some(10),
        max_size: 1000,
        filename: "a.bin".into(),
        filetype: "application/octet-stream".into(),
        target: target(),
        temp_key: "tmp/t/u".into(),
        expires_at: t(100),
        multipart_id: Some("mp-1".into()),
        direct: Some(direct()),
    };
    Given::with(())
        .given_no_previous_events()
        .when(start)
        .then_expect_events(direct_history());
}

#[test]
fn a_direct_upload_takes_no_chunks_through_the_api_but_completes_without_them() {
    Given::with(())
        .given(direct_history())
        .when(UploadCommand::AcceptChunk {
            from_offset: 0,
            bytes: 10,
            declared_length: None,
            now: t(10),
            expires_at: t(200),
            parts: None,
            sha256_state: None,
        })
        .then_expect_error(UploadError::Direct);
    Given::with(())
        .given(direct_history())
        .when(UploadCommand::Complete {
            version_number: 1,
            sha256: "ab".repeat(32),
        })
        .then_expect_events(vec![UploadEvent::UploadCompleted {
            file_id: target().file_id,
            version_number: 1,
            sha256: "ab".repeat(32),
        }]);
    // Expiry applies to direct sessions like any other.
    Given::with(())
        .given(direct_history())
        .when(UploadCommand::Expire { now: t(100) })
        .then_expect_events(vec![UploadEvent::UploadExpired]);
}
