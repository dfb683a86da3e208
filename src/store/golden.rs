//! Golden files of every event type and version (snapshots/README.md). Changing an
//! event's serialized form without a new version fails here; so does a new variant
//! without a golden file, a golden file nobody writes any more, and an old version that
//! no longer upcasts to the current form. `UPDATE_GOLDEN=1 cargo test --lib golden`
//! (re)writes the CURRENT versions' files — review the diff: a change to an existing
//! file means a new version is needed instead.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use cqrs_es::DomainEvent;
use serde::Serialize;
use serde_json::Value;
use strum::VariantNames;
use uuid::Uuid;

use super::upcast::current_version;
use crate::aggregates::file::{FinalBlob, NewVersion, Original, Variant};
use crate::aggregates::session::RevokeReason;
use crate::aggregates::{FileEvent, NotificationEvent, Role, SessionEvent, TenantEvent, UserEvent};
use crate::ids::{FileId, UserId};
use crate::privacy::seal::DataKey;
use crate::privacy::{KeyRing, KeyState, StoredEvent, open_with, seal_payload_with_nonces};

/// Fixed ids and key: golden files are byte-for-byte reproducible.
const TENANT: Uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001);
const USER: Uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0002);
const STREAM: Uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0003);
const GOLDEN_KEY: [u8; 32] = [0x42; 32];

/// One representative instance of an event, with what the test needs to know about it.
struct Sample {
    aggregate_type: &'static str,
    event_type: String,
    version: String,
    /// The stream id (the user id for user events, so the subject is `USER`).
    aggregate_id: String,
    /// The event as the aggregate sees it (plaintext), serialized.
    value: Value,
}

fn sample<E: DomainEvent + Serialize>(
    aggregate_type: &'static str,
    stream: Uuid,
    event: E,
) -> Sample {
    Sample {
        aggregate_type,
        event_type: event.event_type(),
        version: event.event_version(),
        aggregate_id: stream.to_string(),
        value: serde_json::to_value(&event).unwrap(),
    }
}

fn user_samples() -> Vec<Sample> {
    [
        UserEvent::UserRegistered {
            handle: "ada".into(),
            name: "Ada Lovelace".into(),
            email: "ada@example.com".into(),
            role: Role::Admin,
        },
        UserEvent::RoleChanged {
            role: Role::Auditor,
        },
        UserEvent::UserBanned,
        UserEvent::UserUnbanned,
        UserEvent::UserErased {
            plaintext_events: 2,
        },
    ]
    .into_iter()
    .map(|e| sample("user", USER, e))
    .collect()
}

fn session_samples() -> Vec<Sample> {
    [
        SessionEvent::SessionStarted {
            user_id: UserId(USER),
            user_agent: "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0".into(),
            ip: "203.0.113.7".into(),
            refresh_hash: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
            refresh_expires_at: 1_700_000_000,
        },
        SessionEvent::SessionRefreshed {
            refresh_hash: "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752".into(),
            refresh_expires_at: 1_700_086_400,
        },
        SessionEvent::SessionRevoked {
            reason: RevokeReason::Logout,
        },
    ]
    .into_iter()
    .map(|e| sample("session", STREAM, e))
    .collect()
}

fn tenant_samples() -> Vec<Sample> {
    let invitation = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0004);
    [
        TenantEvent::TenantCreated {
            name: "Analytical Engines Ltd".into(),
            created_by: UserId(USER),
        },
        TenantEvent::InvitationCreated {
            invitation_id: invitation,
            token_hash: "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae".into(),
            role: Role::User,
            expires_at: 1_700_604_800,
            invited_by: UserId(USER),
        },
        TenantEvent::InvitationAccepted {
            invitation_id: invitation,
            user_id: UserId(USER),
        },
    ]
    .into_iter()
    .map(|e| sample("tenant", TENANT, e))
    .collect()
}

fn notification_samples() -> Vec<Sample> {
    vec![sample(
        "notification",
        STREAM,
        NotificationEvent::NotificationRead,
    )]
}

fn file_samples() -> Vec<Sample> {
    let sha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    let blob = FinalBlob {
        storage_key: format!("tenants/{TENANT}/blobs/{sha}"),
        size_bytes: 1024,
        sha256: sha.into(),
        detected_mime: "application/pdf".into(),
    };
    [
        FileEvent::FileCreated {
            owner_id: UserId(USER),
            display_name: "report.pdf".into(),
        },
        FileEvent::Uploaded {
            version_number: 1,
            version: NewVersion {
                filename: "report.pdf".into(),
                declared_mime: "application/pdf".into(),
                size_bytes: 1024,
                temp_location: format!("tmp/{TENANT}/upload-1"),
                sha256: sha.into(),
            },
        },
        FileEvent::Hashed {
            version_number: 1,
            sha256: sha.into(),
        },
        FileEvent::DuplicateDetected {
            version_number: 2,
            original: Original::OtherFile {
                file_id: FileId(STREAM),
                version_number: 1,
            },
        },
        FileEvent::VirusFailed {
            version_number: 3,
            signature: "Eicar-Test-Signature".into(),
        },
        FileEvent::ProcessingStarted {
            version_number: 1,
            attempt: 1,
        },
        FileEvent::ProcessingFailed {
            version_number: 1,
            attempt: 1,
            reason: "storage unavailable".into(),
            last_attempt: false,
            max_attempts: 5,
        },
        FileEvent::ProcessingRetried { version_number: 1 },
        FileEvent::Optimized {
            version_number: 1,
            variant: Variant {
                name: "thumbnail".into(),
                storage_key: format!("tenants/{TENANT}/variants/{sha}/thumbnail"),
                mime_type: "image/webp".into(),
                size_bytes: 512,
            },
        },
        FileEvent::VersionCompleted {
            version_number: 1,
            result: blob.clone(),
        },
        FileEvent::Renamed {
            display_name: "report-final.pdf".into(),
        },
        FileEvent::Tagged {
            tag: "finance".into(),
        },
        FileEvent::Untagged {
            tag: "finance".into(),
        },
        FileEvent::Deleted,
        FileEvent::Restored,
        FileEvent::Purged,
        FileEvent::VersionRestored {
            version_number: 4,
            from_version: 1,
            filename: "report.pdf".into(),
            blob,
        },
        FileEvent::VersionPruned { version_number: 1 },
    ]
    .into_iter()
    .map(|e| sample("file", STREAM, e))
    .collect()
}

/// Every aggregate: its samples and the variant names the compiler knows of.
fn all_samples() -> Vec<(&'static str, &'static [&'static str], Vec<Sample>)> {
    vec![
        ("file", FileEvent::VARIANTS, file_samples()),
        (
            "notification",
            NotificationEvent::VARIANTS,
            notification_samples(),
        ),
        ("session", SessionEvent::VARIANTS, session_samples()),
        ("tenant", TenantEvent::VARIANTS, tenant_samples()),
        ("user", UserEvent::VARIANTS, user_samples()),
    ]
}

fn ring() -> KeyRing {
    let mut ring = KeyRing::default();
    ring.insert(TENANT, USER, KeyState::Active(DataKey(GOLDEN_KEY)));
    ring
}

/// The sample as the event store would store it: personal fields sealed (with counter
/// nonces instead of random ones, so the file is reproducible).
fn stored_form(s: &Sample) -> Value {
    let mut value = s.value.clone();
    let mut counter = 0u8;
    let mut nonce = || {
        counter += 1;
        [counter; 12]
    };
    seal_payload_with_nonces(
        &ring(),
        TENANT,
        s.aggregate_type,
        &s.aggregate_id,
        &s.event_type,
        &mut value,
        &mut nonce,
    )
    .unwrap();
    value
}

fn snapshots_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("snapshots")
}

fn golden_path(aggregate_type: &str, event_type: &str, version: &str) -> PathBuf {
    snapshots_dir()
        .join(aggregate_type)
        .join(format!("{event_type}.v{version}.json"))
}

fn read_golden(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} — every event type needs a golden file; run UPDATE_GOLDEN=1 cargo test --lib golden",
            path.display()
        )
    });
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Decodes a stored payload of `version` the way every load path does.
fn decode(s: &Sample, version: &str, stored: &Value, ring: &KeyRing) -> Value {
    let text = stored.to_string();
    let event = StoredEvent {
        tenant_id: TENANT,
        aggregate_type: s.aggregate_type,
        aggregate_id: &s.aggregate_id,
        event_type: &s.event_type,
        event_version: version,
        payload: &text,
    };
    let opened = open_with(ring, &[event]).unwrap().remove(0).unwrap_or(text);
    serde_json::from_str(&opened).unwrap()
}

#[test]
fn every_variant_has_a_sample_at_its_current_version() {
    for (aggregate_type, variants, samples) in all_samples() {
        let sampled: BTreeSet<&str> = samples.iter().map(|s| s.event_type.as_str()).collect();
        let known: BTreeSet<&str> = variants.iter().copied().collect();
        assert_eq!(
            sampled, known,
            "{aggregate_type}: add a sample for every variant"
        );
        for s in &samples {
            assert_eq!(
                s.version,
                current_version(aggregate_type, &s.event_type),
                "{aggregate_type} {}: event_version() and upcast::current_version disagree",
                s.event_type
            );
        }
    }
}

#[test]
fn golden_files_match_the_current_serialized_form() {
    let update = std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1");
    for (_, _, samples) in all_samples() {
        for s in samples {
            let path = golden_path(s.aggregate_type, &s.event_type, &s.version);
            let stored = stored_form(&s);
            if update {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                let text = serde_json::to_string_pretty(&stored).unwrap() + "\n";
                std::fs::write(&path, text).unwrap();
                continue;
            }
            assert_eq!(
                read_golden(&path),
                stored,
                "{}: the serialized form changed — give the event a new version and an upcaster",
                path.display()
            );
            // And it reads back as the event it was written from.
            assert_eq!(decode(&s, &s.version, &stored, &ring()), s.value);
        }
    }
}

#[test]
fn old_versions_stay_and_upcast_to_the_current_form() {
    let mut checked = 0;
    for (_, _, samples) in all_samples() {
        for s in samples {
            let current: u32 = s.version.parse().unwrap();
            for old in 1..current {
                let path = golden_path(s.aggregate_type, &s.event_type, &old.to_string());
                let stored = read_golden(&path);
                // No key was ever created for a pre-v2 user: plaintext reads as is…
                assert_eq!(
                    decode(&s, &old.to_string(), &stored, &KeyRing::default()),
                    s.value,
                    "{}",
                    path.display()
                );
                // …until the user is erased: then it reads as erased, like sealed data.
                let mut erased = KeyRing::default();
                erased.insert(TENANT, USER, KeyState::Erased);
                let redacted = decode(&s, &old.to_string(), &stored, &erased);
                assert!(redacted.to_string().contains(crate::privacy::ERASED));
                assert_ne!(redacted, s.value);
                checked += 1;
            }
        }
    }
    assert!(
        checked >= 2,
        "UserRegistered.v1 and SessionStarted.v1 are kept"
    );
}

#[test]
fn no_golden_file_without_an_event_type_and_version() {
    let mut expected: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (aggregate_type, _, samples) in all_samples() {
        for s in samples {
            let current: u32 = s.version.parse().unwrap();
            for v in 1..=current {
                expected
                    .entry(aggregate_type.to_string())
                    .or_default()
                    .insert(format!("{}.v{v}.json", s.event_type));
            }
        }
    }
    for entry in std::fs::read_dir(snapshots_dir()).unwrap() {
        let entry = entry.unwrap();
        if !entry.file_type().unwrap().is_dir() {
            continue; // README.md
        }
        let aggregate_type = entry.file_name().to_string_lossy().to_string();
        let wanted = expected.get(&aggregate_type).cloned().unwrap_or_default();
        for file in std::fs::read_dir(entry.path()).unwrap() {
            let name = file.unwrap().file_name().to_string_lossy().to_string();
            assert!(
                wanted.contains(&name),
                "snapshots/{aggregate_type}/{name} belongs to no event type and version"
            );
        }
    }
}

#[test]
fn a_changed_serialized_form_is_caught() {
    // The check above compares values: prove a renamed field is a difference.
    let s = &user_samples()[1];
    let mut changed = stored_form(s);
    let body = changed["RoleChanged"].as_object_mut().unwrap();
    let role = body.remove("role").unwrap();
    body.insert("new_role".into(), role);
    assert_ne!(stored_form(s), changed);
}
