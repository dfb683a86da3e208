//! The transparency log (docs/transparency.md): every committed event gets exactly one
//! leaf, in commit order, under concurrent writers with rollbacks and builders that are
//! killed and restarted; the roots equal RFC 6962's Merkle tree hash computed here from
//! the events; inclusion and consistency proofs from the real API and the real binary
//! are accepted by an independent checker written from RFC 9162 (tests/tlog_verify.py),
//! and tampered proofs, foreign keys and edited events are refused; the signer refuses
//! a head that contradicts the last one.

use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chronicle::aggregates::FileCommand;
use chronicle::config::CheckpointKey;
use chronicle::transparency::{builder, heads, proofs};
use reqwest::StatusCode;
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use uuid::Uuid;

use crate::audit_verify::tamper;
use crate::common::TestDb;
use crate::files_api::{Caller, World};

const SEED: [u8; 32] = [7; 32];

// --- RFC 6962 §2.1, written here from the RFC, independently of src/ -------------------

fn rfc_leaf(data: &[u8]) -> [u8; 32] {
    Sha256::new()
        .chain_update([0u8])
        .chain_update(data)
        .finalize()
        .into()
}

fn rfc_node(l: &[u8; 32], r: &[u8; 32]) -> [u8; 32] {
    Sha256::new()
        .chain_update([1u8])
        .chain_update(l)
        .chain_update(r)
        .finalize()
        .into()
}

/// MTH(D[n]) over leaf hashes: split at the largest power of two smaller than n.
fn rfc_root(leaves: &[[u8; 32]]) -> [u8; 32] {
    match leaves.len() {
        0 => Sha256::digest(b"").into(),
        1 => leaves[0],
        n => {
            let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
            rfc_node(&rfc_root(&leaves[..k]), &rfc_root(&leaves[k..]))
        }
    }
}

// --- fixtures ---------------------------------------------------------------------------

/// One writer: transactions of 1–3 events with pauses inside, one in five rolled back.
async fn writer(pool: PgPool, w: usize, quota: usize, tenants: Arc<Vec<Uuid>>) -> usize {
    let (mut committed, mut txn) = (0, 0);
    while committed < quota {
        txn += 1;
        let k = rand::random_range(1..=3usize).min(quota - committed);
        let rollback = rand::random_range(0..5u32) == 0;
        let tenant = tenants[rand::random_range(0..tenants.len())];
        let mut tx = pool.begin().await.unwrap();
        for seq in 1..=k {
            sqlx::query(
                "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, tenant_id)
                 VALUES ('load', $1, $2, 'Loaded', '1', '{\"Loaded\":{}}', $3::json, $4)",
            )
            .bind(format!("w{w}-t{txn}"))
            .bind(seq as i64)
            .bind(format!(r#"{{"actor":"system:test","hash":"h{w}-{txn}-{seq}"}}"#))
            .bind(tenant)
            .execute(&mut *tx)
            .await
            .unwrap();
            tokio::time::sleep(Duration::from_micros(rand::random_range(0..1500))).await;
        }
        if rollback {
            tx.rollback().await.unwrap();
        } else {
            tx.commit().await.unwrap();
            committed += k;
        }
    }
    committed
}

/// A builder instance: small random batches until aborted.
async fn builder_instance(pool: PgPool) {
    loop {
        let limit = rand::random_range(1..=50i64);
        if let Ok(builder::BuildOutcome::Idle | builder::BuildOutcome::Busy) =
            builder::run_batch(&pool, limit).await
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_committed_event_gets_one_leaf_in_commit_order_despite_rollbacks_and_restarts() {
    const WRITERS: usize = 8;
    const EVENTS: usize = 4_000;
    let db = TestDb::new().await;
    let writers_pool = PgPoolOptions::new()
        .max_connections(WRITERS as u32)
        .connect(&db.url)
        .await
        .unwrap();
    let tenants = Arc::new(vec![Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7()]);
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            tokio::spawn(writer(
                writers_pool.clone(),
                w,
                EVENTS / WRITERS,
                tenants.clone(),
            ))
        })
        .collect();

    // Two builders compete; every 30–80 ms one is killed mid-whatever and restarted.
    let mut builders = vec![
        tokio::spawn(builder_instance(db.worker.clone())),
        tokio::spawn(builder_instance(db.worker.clone())),
    ];
    let mut kills = 0;
    while !writers.iter().all(|w| w.is_finished()) {
        tokio::time::sleep(Duration::from_millis(rand::random_range(30..80))).await;
        let victim = rand::random_range(0..builders.len());
        builders[victim].abort();
        builders[victim] = tokio::spawn(builder_instance(db.worker.clone()));
        kills += 1;
    }
    let mut committed = 0;
    for w in writers {
        committed += w.await.unwrap();
    }
    assert_eq!(committed, EVENTS);
    for b in &builders {
        b.abort();
    }
    builder::catch_up(&db.worker).await.unwrap();
    assert!(kills > 3, "the builders were restarted ({kills} times)");

    let appended: i64 = sqlx::query_scalar("SELECT leaves_appended FROM merkle_builder")
        .fetch_one(&db.worker)
        .await
        .unwrap();
    assert_eq!(appended, EVENTS as i64, "no event got two leaves");
    for tenant in tenants.iter() {
        // The tenant's events in commit order, and its leaves in leaf order.
        let events: Vec<(i64, String)> = sqlx::query_as(
            "SELECT global_position, metadata->>'hash' FROM events WHERE tenant_id = $1
              ORDER BY transaction_id, global_position",
        )
        .bind(tenant)
        .fetch_all(&db.owner)
        .await
        .unwrap();
        let leaves: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT leaf_index, global_position FROM merkle_leaves WHERE tenant_id = $1
              ORDER BY leaf_index",
        )
        .bind(tenant)
        .fetch_all(&db.worker)
        .await
        .unwrap();
        let indexes: Vec<i64> = leaves.iter().map(|l| l.0).collect();
        assert_eq!(
            indexes,
            (0..events.len() as i64).collect::<Vec<_>>(),
            "contiguous from 0"
        );
        let logged: Vec<i64> = leaves.iter().map(|l| l.1).collect();
        let committed: Vec<i64> = events.iter().map(|e| e.0).collect();
        assert_eq!(
            logged, committed,
            "one leaf per committed event, in commit order"
        );

        let hashes: Vec<[u8; 32]> = events.iter().map(|e| rfc_leaf(e.1.as_bytes())).collect();
        let (size, root): (i64, Vec<u8>) =
            sqlx::query_as("SELECT size, root FROM merkle_trees WHERE tenant_id = $1")
                .bind(tenant)
                .fetch_one(&db.worker)
                .await
                .unwrap();
        assert_eq!(size as usize, events.len());
        assert_eq!(
            root,
            rfc_root(&hashes).to_vec(),
            "the root is RFC 6962's MTH"
        );
    }
}

// --- proofs over HTTP and from the binary, checked by tests/tlog_verify.py ------------

fn checker(args: &[&str], json: &str) -> bool {
    let file = std::env::temp_dir().join(format!("tlog-proof-{}.json", Uuid::now_v7()));
    std::fs::write(&file, json).unwrap();
    let out = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tlog_verify.py"))
        .arg(args[0])
        .arg(&file)
        .args(&args[1..])
        .output()
        .expect("python3 runs");
    let _ = std::fs::remove_file(&file);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.starts_with("OK") || text.starts_with("INVALID"),
        "checker failed to run: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.status.success()
}

fn chronicle(db_url: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_chronicle"))
        .args(args)
        .env("DATABASE_URL", db_url)
        .envs(crate::common::pooler_env(db_url))
        .env("CHECKPOINT_SIGNING_KEY", STANDARD.encode(SEED))
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

/// Replaces the first base64 hash of `field` (an array or a string) in `proof`.
fn flip(proof: &Value, pointer: &str) -> String {
    let mut forged = proof.clone();
    let target = forged.pointer_mut(pointer).unwrap();
    let text = target.as_str().unwrap();
    let mut bytes = STANDARD.decode(text).unwrap();
    bytes[0] ^= 1;
    *target = Value::String(STANDARD.encode(bytes));
    forged.to_string()
}

/// What the proof checks share.
struct Log {
    w: World,
    auditor: Caller,
    user: Caller,
    vkey: String,
    stranger: String,
    file: Uuid,
}

async fn event_count(log: &Log) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE tenant_id = $1")
        .bind(log.w.tenant)
        .fetch_one(&log.w.t.db.owner)
        .await
        .unwrap()
}

async fn events_of(log: &Log) -> Vec<(i64, String)> {
    sqlx::query_as(
        "SELECT global_position, metadata->>'hash' FROM events WHERE tenant_id = $1 ORDER BY global_position",
    )
    .bind(log.w.tenant)
    .fetch_all(&log.w.t.db.owner)
    .await
    .unwrap()
}

#[tokio::test]
async fn proofs_from_the_api_and_the_binary_pass_an_independent_rfc_9162_checker() {
    let selftest = Command::new("python3")
        .args([
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tlog_verify.py"),
            "selftest",
        ])
        .output()
        .unwrap();
    assert!(
        selftest.status.success(),
        "the checker agrees with the RFC's definitions"
    );
    let log = Box::pin(setup()).await;
    let (n1, head1) = Box::pin(inclusion_of_every_event(&log)).await;
    let n2 = Box::pin(consistency_from_every_size(&log, n1, &head1)).await;
    Box::pin(the_binary_gives_the_same_proofs(&log, n1, n2, &head1)).await;
    Box::pin(errors_have_the_documented_statuses(&log, n1, n2)).await;
    Box::pin(an_event_edited_after_it_was_logged_fails_its_proof(&log)).await;
}

async fn setup() -> Log {
    let seed = STANDARD.encode(SEED);
    let w = World::new(&[
        ("CHECKPOINT_SIGNING_KEY", &seed),
        ("TRANSPARENCY_HEAD_EVERY_SECS", "1"),
    ])
    .await;
    let auditor = w.join("audrey", "auditor").await;
    let user = w.join("uma", "user").await;
    // The vkey from the binary names this tenant's log and carries the configured key.
    let out = chronicle(
        &w.t.db.url,
        &["audit", "log-key", "--tenant", &w.tenant.to_string()],
    );
    assert!(out.status.success());
    let vkey = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let public = CheckpointKey::from_seed(SEED).verifying();
    assert!(
        vkey.starts_with(&format!("chronicle/tenants/{}+", w.tenant)),
        "{vkey}"
    );
    assert!(vkey.ends_with(&STANDARD.encode([&[1u8][..], public.as_bytes()].concat())));
    let stranger = heads::verifier_key(
        "chronicle",
        w.tenant,
        &CheckpointKey::from_seed([8; 32]).verifying(),
    );
    let file = w.create(&w.admin, "a.txt").await;
    for i in 0..6 {
        w.run(
            file,
            FileCommand::Tag {
                tag: format!("t{i}"),
            },
        )
        .await;
    }
    Log {
        w,
        auditor,
        user,
        vkey,
        stranger,
        file,
    }
}

/// Every event of the tenant, over HTTP, against the newest head; returns its size and the head.
async fn inclusion_of_every_event(log: &Log) -> (i64, Value) {
    let (w, auditor, vkey, stranger) = (&log.w, &log.auditor, &log.vkey, &log.stranger);
    let n1 = event_count(log).await;
    let head1 = w
        .get_until("/v1/audit/tree-head", auditor, |h| h["tree_size"] == n1)
        .await;
    assert!(checker(
        &["note", "--vkey", vkey],
        head1["checkpoint"].as_str().unwrap()
    ));
    assert!(!checker(
        &["note", "--vkey", stranger],
        head1["checkpoint"].as_str().unwrap()
    ));
    let positions = events_of(log).await;
    for (i, (position, hash)) in positions.iter().enumerate() {
        let (status, proof) = w
            .send(
                "GET",
                &format!("/v1/audit/proofs/inclusion?global_position={position}"),
                auditor,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{proof}");
        let json = proof.to_string();
        assert!(
            checker(&["inclusion", "--vkey", vkey, "--event-hash", hash], &json),
            "{json}"
        );
        // Forgeries on a sample (each check is a Python process).
        if i % 4 != 1 {
            continue;
        }
        assert!(
            !checker(&["inclusion", "--vkey", stranger], &json),
            "another key"
        );
        assert!(
            !checker(
                &["inclusion", "--vkey", vkey, "--event-hash", &"0".repeat(64)],
                &json
            ),
            "another event"
        );
        if !proof["inclusion_path"].as_array().unwrap().is_empty() {
            let forged = flip(&proof, "/inclusion_path/0");
            assert!(
                !checker(&["inclusion", "--vkey", vkey], &forged),
                "a flipped path hash"
            );
        }
        let mut moved = proof.clone();
        moved["leaf_index"] = Value::from((proof["leaf_index"].as_u64().unwrap() + 1) % n1 as u64);
        assert!(
            !checker(&["inclusion", "--vkey", vkey], &moved.to_string()),
            "another index"
        );
        let forged = flip(&proof, "/tree_head/root_hash");
        assert!(
            !checker(&["inclusion", "--vkey", vkey], &forged),
            "an unsigned root"
        );
    }
    // The proof reveals no other event: only hashes of subtrees besides its own event.
    let (_, proof) = w
        .send(
            "GET",
            &format!(
                "/v1/audit/proofs/inclusion?global_position={}",
                positions[2].0
            ),
            auditor,
        )
        .await;
    let text = proof.to_string();
    for (other, hash) in positions.iter().filter(|p| p.0 != positions[2].0) {
        assert!(
            !text.contains(hash.as_str()),
            "event {other} is not in the proof"
        );
    }
    (n1, head1)
}

/// The log grows; the head kept before is proven a prefix of the new one (and every
/// other size too). Returns the new size.
async fn consistency_from_every_size(log: &Log, n1: i64, head1: &Value) -> i64 {
    let (w, auditor, vkey) = (&log.w, &log.auditor, &log.vkey);
    w.run(
        log.file,
        FileCommand::Rename {
            display_name: "b.txt".into(),
        },
    )
    .await;
    for i in 0..4 {
        w.run(
            log.file,
            FileCommand::Tag {
                tag: format!("u{i}"),
            },
        )
        .await;
    }
    let n2 = event_count(log).await;
    w.get_until("/v1/audit/tree-head", auditor, |h| h["tree_size"] == n2)
        .await;
    let root1 = head1["root_hash"].as_str().unwrap();
    let mut sizes = vec![1, 2, 3, n1 - 1, n1, n1 + 1, n2 - 1, n2];
    sizes.dedup();
    for from in sizes {
        let (status, proof) = w
            .send(
                "GET",
                &format!("/v1/audit/proofs/consistency?from={from}"),
                auditor,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{proof}");
        let kept = if from == n1 {
            root1.to_string()
        } else {
            proof["first"]["root_hash"].as_str().unwrap().to_string()
        };
        let json = proof.to_string();
        assert!(
            checker(
                &["consistency", "--vkey", vkey, "--first-root", &kept],
                &json
            ),
            "{json}"
        );
        if !proof["consistency_path"].as_array().unwrap().is_empty() {
            let forged = flip(&proof, "/consistency_path/0");
            assert!(!checker(
                &["consistency", "--vkey", vkey, "--first-root", &kept],
                &forged
            ));
        }
        let wrong = flip(&proof, "/first/root_hash");
        let wrong_root = serde_json::from_str::<Value>(&wrong).unwrap()["first"]["root_hash"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            !checker(
                &["consistency", "--vkey", vkey, "--first-root", &wrong_root],
                &json
            ),
            "another first root"
        );
    }
    n2
}

async fn the_binary_gives_the_same_proofs(log: &Log, n1: i64, n2: i64, head1: &Value) {
    let (w, vkey) = (&log.w, &log.vkey);
    let root1 = head1["root_hash"].as_str().unwrap();
    let positions = events_of(log).await;
    let tenant = w.tenant.to_string();
    let (position, hash) = &positions[3];
    let out = chronicle(
        &w.t.db.url,
        &[
            "audit",
            "prove-inclusion",
            "--tenant",
            &tenant,
            "--position",
            &position.to_string(),
            "--tree-size",
            &n1.to_string(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&json).unwrap()["tree_head"]["tree_size"],
        n1
    );
    assert!(checker(
        &["inclusion", "--vkey", vkey, "--event-hash", hash],
        &json
    ));
    let out = chronicle(
        &w.t.db.url,
        &[
            "audit",
            "prove-consistency",
            "--tenant",
            &tenant,
            "--from",
            &n1.to_string(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = String::from_utf8(out.stdout).unwrap();
    assert!(checker(
        &["consistency", "--vkey", vkey, "--first-root", root1],
        &json
    ));
    let out = chronicle(
        &w.t.db.url,
        &[
            "audit",
            "tree-head",
            "--tenant",
            &tenant,
            "--size",
            &n1.to_string(),
        ],
    );
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        head1["checkpoint"].as_str().unwrap()
    );
    // Exit codes: 1 nothing to prove with, 2 bad usage.
    let missing = chronicle(
        &w.t.db.url,
        &[
            "audit",
            "prove-inclusion",
            "--tenant",
            &Uuid::now_v7().to_string(),
            "--position",
            "1",
        ],
    );
    assert_eq!(missing.status.code(), Some(1));
    let backwards = chronicle(
        &w.t.db.url,
        &[
            "audit",
            "prove-consistency",
            "--tenant",
            &tenant,
            "--from",
            &(n2 + 1).to_string(),
        ],
    );
    assert_eq!(backwards.status.code(), Some(2));
}

/// The one error shape, the documented statuses, the caller's tenant only.
async fn errors_have_the_documented_statuses(log: &Log, n1: i64, n2: i64) {
    let (w, auditor, user) = (&log.w, &log.auditor, &log.user);
    let positions = events_of(log).await;
    let (other_tenant, other_admin) = crate::files_api::tenant(&w.t, "ozzy").await;
    let theirs: Vec<i64> =
        sqlx::query_scalar("SELECT global_position FROM events WHERE tenant_id = $1")
            .bind(other_tenant)
            .fetch_all(&w.t.db.owner)
            .await
            .unwrap();
    let first = positions[0].0;
    let cases: Vec<(String, &Caller, StatusCode)> = vec![
        (
            format!("/v1/audit/proofs/inclusion?global_position={first}"),
            user,
            StatusCode::FORBIDDEN,
        ),
        (
            format!("/v1/audit/proofs/inclusion?global_position={}", theirs[0]),
            auditor,
            StatusCode::NOT_FOUND,
        ),
        (
            format!("/v1/audit/proofs/inclusion?global_position={first}"),
            &other_admin,
            StatusCode::NOT_FOUND,
        ),
        (
            format!("/v1/audit/proofs/inclusion?global_position={first}&tree_size=0"),
            auditor,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            format!(
                "/v1/audit/proofs/inclusion?global_position={first}&tree_size={}",
                n2 + 5
            ),
            auditor,
            StatusCode::NOT_FOUND,
        ),
        (
            "/v1/audit/proofs/inclusion".to_string(),
            auditor,
            StatusCode::BAD_REQUEST,
        ),
        (
            "/v1/audit/proofs/inclusion?global_position=x".to_string(),
            auditor,
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("/v1/audit/proofs/consistency?from={}", n2 + 1),
            auditor,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/v1/audit/proofs/consistency?from=0".to_string(),
            auditor,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/v1/audit/proofs/consistency?from=-1".to_string(),
            auditor,
            StatusCode::BAD_REQUEST,
        ),
        (
            "/v1/audit/proofs/consistency?from=1".to_string(),
            user,
            StatusCode::FORBIDDEN,
        ),
        (
            format!("/v1/audit/tree-head?tree_size={}", n2 + 5),
            auditor,
            StatusCode::NOT_FOUND,
        ),
        (
            format!(
                "/v1/audit/proofs/inclusion?global_position={}&tree_size={n1}",
                positions.last().unwrap().0
            ),
            auditor,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ];
    for (path, who, status) in cases {
        let (got, body) = w.send("GET", &path, who).await;
        assert_eq!(got, status, "{path}: {body}");
        assert!(
            body["error"]["code"].is_string() && body["error"]["message"].is_string(),
            "{body}"
        );
    }
}

async fn an_event_edited_after_it_was_logged_fails_its_proof(log: &Log) {
    let positions = events_of(log).await;
    tamper(
        &log.w.t.db,
        r#"UPDATE events SET metadata = jsonb_set(metadata::jsonb, '{hash}', '"0000000000000000000000000000000000000000000000000000000000000000"')::json
            WHERE global_position = $1::text::bigint"#,
        &positions[1].0.to_string(),
    )
    .await;
    let (status, proof) = log
        .w
        .send(
            "GET",
            &format!(
                "/v1/audit/proofs/inclusion?global_position={}",
                positions[1].0
            ),
            &log.auditor,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        !checker(&["inclusion", "--vkey", &log.vkey], &proof.to_string()),
        "the edit shows"
    );
    let original = &positions[1].1;
    assert!(
        !checker(
            &["inclusion", "--vkey", &log.vkey, "--event-hash", original],
            &proof.to_string()
        ),
        "the proof names the edited event, not the one the auditor holds"
    );

    // An event deleted after it was logged: the tree still proves it was there, to
    // whoever holds it.
    let (gone, gone_hash) = &positions[4];
    tamper(
        &log.w.t.db,
        "DELETE FROM events WHERE global_position = $1::text::bigint",
        &gone.to_string(),
    )
    .await;
    let (status, proof) = log
        .w
        .send(
            "GET",
            &format!("/v1/audit/proofs/inclusion?global_position={gone}"),
            &log.auditor,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{proof}");
    assert!(proof["event"].is_null(), "{proof}");
    let json = proof.to_string();
    assert!(checker(
        &["inclusion", "--vkey", &log.vkey, "--event-hash", gone_hash],
        &json
    ));
    assert!(
        !checker(&["inclusion", "--vkey", &log.vkey], &json),
        "no event to check"
    );
}

#[tokio::test]
async fn the_signer_refuses_a_head_that_contradicts_the_last_one() {
    let db = TestDb::new().await;
    let key = CheckpointKey::from_seed(SEED);
    let (tenant, other) = (Uuid::now_v7(), Uuid::now_v7());
    let insert = |tenant: Uuid, id: &'static str, seq: i64| {
        let pool = db.owner.clone();
        async move {
            sqlx::query(
                "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, tenant_id)
                 VALUES ('load', $1, $2, 'Loaded', '1', '{}', $3::json, $4)",
            )
            .bind(id)
            .bind(seq)
            .bind(format!(r#"{{"hash":"{id}-{seq}"}}"#))
            .bind(tenant)
            .execute(&pool)
            .await
            .unwrap();
        }
    };
    for seq in 1..=5 {
        insert(tenant, "a", seq).await;
        insert(other, "b", seq).await;
    }
    builder::catch_up(&db.worker).await.unwrap();
    let signed = heads::sign_due(&db.worker, &key, "chronicle", Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(signed.len(), 2);
    // Nothing grew: nothing to sign.
    assert!(
        heads::sign_due(&db.worker, &key, "chronicle", Duration::ZERO)
            .await
            .unwrap()
            .is_empty()
    );

    // Someone rewrites the stored root of the first four leaves (stored index 6; a
    // superuser with triggers off), then the log grows.
    tamper(
        &db,
        "UPDATE merkle_hash_tiles SET hashes = set_byte(hashes, 192, get_byte(hashes, 192) # 1)
          WHERE tenant_id = $1::uuid AND tile = 0",
        &tenant.to_string(),
    )
    .await;
    for seq in 6..=7 {
        insert(tenant, "a", seq).await;
        insert(other, "b", seq).await;
    }
    builder::catch_up(&db.worker).await.unwrap();
    let signed = heads::sign_due(&db.worker, &key, "chronicle", Duration::ZERO)
        .await
        .unwrap();
    let tenants: HashSet<Uuid> = signed.iter().map(|h| h.tenant_id).collect();
    assert_eq!(
        tenants,
        HashSet::from([other]),
        "the damaged tree is not signed, the other is"
    );
    let mut conn = db.worker.acquire().await.unwrap();
    assert_eq!(
        heads::newest(&mut conn, tenant)
            .await
            .unwrap()
            .unwrap()
            .tree_size,
        5
    );
    let sizes: HashMap<Uuid, u64> = signed.iter().map(|h| (h.tenant_id, h.tree_size)).collect();
    assert_eq!(sizes[&other], 7);
    // The other tenant's proofs still work against its new head.
    let proof = proofs::prove_consistency(&mut conn, other, 5, None)
        .await
        .unwrap();
    assert_eq!(proof.second.tree_size, 7);
}
