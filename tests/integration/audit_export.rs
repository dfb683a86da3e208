//! The export verifies offline: docs/audit.md's reference verifier
//! (scripts/verify_export.py, Python with `cryptography`) checks a real export written by
//! the real binary with nothing but the keys file `chronicle audit keys` prints — and
//! rejects each kind of tampering with an exported copy.

use std::path::{Path, PathBuf};
use std::process::Command;

use chronicle::aggregates::FileCommand;
use chronicle::config::{CheckpointKey, EventSigningKey};
use chronicle::ids::TenantId;
use chronicle::store::hash::{Attribution, HashInput, event_hash_v2};
use serde_json::{Value, json};

use crate::audit_fixture::{chronicle, chronicle_output, run, stream_of};
use crate::common::{TempDir, TestDb};

/// Runs the reference verifier; (exit code, output).
fn reference_verifier(keys: &Path, export: &Path, extra: &[&str]) -> (i32, String) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/verify_export.py");
    let out = Command::new("python3")
        .arg(script)
        .arg("--keys")
        .arg(keys)
        .args(extra)
        .arg(export)
        .output()
        .expect("python3 runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn write(dir: &TempDir, name: &str, lines: &[Value]) -> PathBuf {
    let path = dir.0.join(name);
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&path, text).unwrap();
    path
}

fn events(lines: &[Value]) -> Vec<usize> {
    (0..lines.len())
        .filter(|i| lines[*i]["type"] == "event")
        .collect()
}

#[tokio::test]
async fn an_export_verifies_offline_with_the_public_keys_and_tampered_copies_do_not() {
    let db = TestDb::new().await;
    let tenant = TenantId::new();
    let first = stream_of(&db, tenant, 3).await;
    let second = stream_of(&db, tenant, 1).await;
    assert_eq!(chronicle(&db, &["audit", "checkpoint"]).0, 0);
    // After the checkpoint: one more event of a known stream and a new stream.
    run(
        &db,
        tenant,
        &second,
        FileCommand::Tag { tag: "late".into() },
    )
    .await;
    stream_of(&db, tenant, 0).await;
    stream_of(&db, TenantId::new(), 1).await; // another tenant's events stay out

    let dir = TempDir::new();
    let (code, keys, err) = chronicle_output(&db, &["audit", "keys"]);
    assert_eq!(code, 0, "{keys}{err}");
    let keys_path = dir.0.join("keys.json");
    std::fs::write(&keys_path, keys.trim()).unwrap();
    let (code, text, err) =
        chronicle_output(&db, &["audit", "export", "--tenant", &tenant.to_string()]);
    assert_eq!(code, 0, "{err}");
    let export = lines(text.trim());
    assert_eq!(export[0]["complete"], true);
    let path = write(&dir, "export.ndjson", &export);

    let (code, out) = reference_verifier(&keys_path, &path, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("8 events in 3 streams, 1 checkpoints; range complete; 2 events after the covering checkpoint"),
        "{out}"
    );
    let digest = export.iter().find(|l| l["type"] == "checkpoint").unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, out) = reference_verifier(&keys_path, &path, &["--trusted-digest", &digest]);
    assert_eq!(code, 0, "{out}");

    // Each tampered copy fails, naming what is wrong.
    let ev = events(&export);
    let of = |id: &str| -> Vec<usize> {
        ev.iter()
            .copied()
            .filter(|i| export[*i]["aggregate_id"] == id)
            .collect()
    };
    let mut cases: Vec<(&str, Vec<Value>)> = Vec::new();
    let mut edited = export.clone();
    edited[of(&first)[2]]["payload"] = json!({"Tagged": {"tag": "forged"}});
    cases.push(("hash_mismatch", edited));
    let mut actor = export.clone();
    actor[of(&first)[1]]["metadata"]["actor"] = json!("system:cli");
    cases.push(("hash_mismatch", actor));
    let mut gap = export.clone();
    gap.remove(of(&first)[1]);
    cases.push(("sequence_gap", gap));
    let mut truncated = export.clone();
    truncated.remove(*of(&first).last().unwrap());
    cases.push(("truncated_tail", truncated));
    cases.push(("unvouched_event", with_forged_append(&export, &of(&second))));
    let mut digest_changed = export.clone();
    let head = digest_changed
        .iter()
        .position(|l| l["type"] == "head")
        .unwrap();
    digest_changed[head]["last_sequence"] = json!(1);
    cases.push(("checkpoint_digest_mismatch", digest_changed));
    cases.push(("checkpoint_signature_invalid", resigned_checkpoint(&export)));
    let mut cut = export.clone();
    cut.pop();
    cases.push(("cut short", cut));
    let mut lying = export.clone();
    lying[0]["complete"] = json!(true);
    lying[0]["since"] = json!("2020-01-01T00:00:00.000000Z");
    cases.push(("claims complete", lying));
    for (i, (problem, copy)) in cases.iter().enumerate() {
        let tampered = write(&dir, &format!("tampered-{i}.ndjson"), copy);
        let (code, out) = reference_verifier(&keys_path, &tampered, &[]);
        assert_eq!(code, 1, "{problem}: {out}");
        assert!(out.contains(problem), "{problem}: {out}");
    }
    let (code, out) =
        reference_verifier(&keys_path, &path, &["--trusted-digest", &"ab".repeat(32)]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("checkpoint_rollback"), "{out}");

    // Another keys file (someone else's keys) vouches for nothing here.
    let strangers = json!({
        "event_keys": {"k1": EventSigningKey::new("k1", [9; 32]).public_entry().trim_start_matches("k1:")},
        "checkpoint_keys": [CheckpointKey::from_seed([9; 32]).public_base64()],
    });
    let strangers_path = dir.0.join("strangers.json");
    std::fs::write(&strangers_path, strangers.to_string()).unwrap();
    let (code, out) = reference_verifier(&strangers_path, &path, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("unvouched_event") && out.contains("checkpoint_signature_invalid"),
        "{out}"
    );

    // A partial export (since the second stream's last event) verifies and says so.
    let late = &export[*of(&second).last().unwrap()]["recorded_at"];
    let (code, text, err) = chronicle_output(
        &db,
        &[
            "audit",
            "export",
            "--tenant",
            &tenant.to_string(),
            "--since",
            late.as_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let part = lines(text.trim());
    assert_eq!(part[0]["complete"], false);
    let part_path = write(&dir, "part.ndjson", &part);
    let (code, out) = reference_verifier(&keys_path, &part_path, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("range partial"), "{out}");
}

/// The export with a well-formed event appended to a stream (`stream`'s line indexes):
/// right sequence, prev_hash and hash, but no signature.
fn with_forged_append(export: &[Value], stream: &[usize]) -> Vec<Value> {
    let last = &export[*stream.last().unwrap()];
    let mut forged = last.clone();
    let sequence = last["sequence"].as_u64().unwrap() + 1;
    let prev = last["metadata"]["hash"].as_str().unwrap().to_string();
    let payload = r#"{"Tagged":{"tag":"forged"}}"#;
    let hash = event_hash_v2(
        &HashInput {
            tenant_id: last["tenant_id"].as_str().unwrap(),
            aggregate_type: "file",
            aggregate_id: last["aggregate_id"].as_str().unwrap(),
            sequence,
            event_type: "Tagged",
            event_version: "1",
            payload,
            prev_hash: &prev,
        },
        &Attribution {
            recorded_at: last["recorded_at"].as_str().unwrap(),
            actor: "system:worker",
            request_id: "r",
            correlation_id: "r",
            causation_id: "r",
        },
    );
    forged["sequence"] = json!(sequence);
    forged["event_type"] = json!("Tagged");
    forged["event_version"] = json!("1");
    forged["payload"] = serde_json::from_str(payload).unwrap();
    forged["metadata"] = json!({"actor": "system:worker", "request_id": "r",
        "correlation_id": "r", "causation_id": "r", "hash_version": "2",
        "prev_hash": prev, "hash": hash, "tenant_id": last["tenant_id"]});
    let mut out = export.to_vec();
    let end = out.pop().unwrap();
    out.push(forged);
    out.push(json!({"type": "end", "events": end["events"].as_u64().unwrap() + 1}));
    out
}

/// The export with its checkpoint re-signed by another key, stored beside it.
fn resigned_checkpoint(export: &[Value]) -> Vec<Value> {
    use base64::Engine;
    use ed25519_dalek::Signer;
    let attacker = CheckpointKey::from_seed([9; 32]);
    let mut out = export.to_vec();
    let c = out.iter_mut().find(|l| l["type"] == "checkpoint").unwrap();
    let digest = hex::decode(c["digest"].as_str().unwrap()).unwrap();
    let signature = attacker.signing().sign(&digest);
    c["signature"] = json!(base64::engine::general_purpose::STANDARD.encode(signature.to_bytes()));
    c["public_key"] = json!(attacker.public_base64());
    out
}
