//! Golden files of every event type and version (snapshots/README.md). Changing an
//! event's serialized form without a new version fails here; so does a new variant
//! without a golden file, a golden file nobody writes any more, and an old version that
//! no longer upcasts to the current form. `UPDATE_GOLDEN=1 cargo test --lib golden`
//! (re)writes the CURRENT versions' files — review the diff: a change to an existing
//! file means a new version is needed instead.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::aggregates::upcast::current_version;
use crate::privacy::seal::DataKey;
use crate::privacy::{KeyRing, KeyState, StoredEvent, open_with, seal_payload_with_nonces};
use samples::{GOLDEN_KEY, Sample, TENANT, USER, all_samples, user_samples};

mod samples;

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

#[test]
fn every_aggregate_of_the_crate_has_samples() {
    // A new aggregate is invisible to the variant checks above unless all_samples lists
    // it: find every event enum in src/aggregates and require it there.
    fn event_enums(dir: &Path, found: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                event_enums(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for line in text.lines() {
                    if let Some(rest) = line.trim().strip_prefix("impl DomainEvent for ") {
                        found.insert(rest.trim_end_matches(" {").trim().to_string());
                    }
                }
            }
        }
    }
    let mut found = BTreeSet::new();
    event_enums(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src/aggregates"),
        &mut found,
    );
    let listed: BTreeSet<String> = all_samples()
        .iter()
        .map(|(aggregate, _, _)| samples::event_enum_of(aggregate).to_string())
        .collect();
    assert!(found.len() >= 6, "found only {found:?}");
    assert_eq!(found, listed, "add the aggregate's samples to all_samples");
}
