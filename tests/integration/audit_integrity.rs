//! Audit integrity against an insider, each case judged by the real `chronicle` binary's
//! exit code: a well-formed forged append (next sequence, right prev_hash, hash exactly
//! as docs/audit.md says) fails verify naming it and is never checkpointed; who and when
//! edited by a superuser fail; a rewrite re-hashed to hide itself fails on its
//! signature; deleting the newest checkpoint is reported and, with a pinned digest, a
//! rollback; events of the previous encoding and crypto-shredded users still verify.

use std::collections::BTreeMap;

use chronicle::aggregates::{Role, User, UserCommand};
use chronicle::commands;
use chronicle::commands::erase::{Erasure, erase_user};
use chronicle::config::{CheckpointKey, EventSigningKey};
use chronicle::ids::{TenantId, UserId};
use chronicle::store::checkpoint::{Head, digest, sort_heads, timestamp_text};
use chronicle::store::hash::{Attribution, HashInput, canonical_json, event_hash_v2};
use chronicle::store::verify::verify_chains;
use chronicle::store::{Actor, ChronicleStore, EventMetadata};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::audit_fixture::{chronicle, key, signed_log, stream_of, tamper};
use crate::common::TestDb;
use crate::versioning::insert_as_old_binary;

/// The stream's last event: (sequence, hash).
async fn head(db: &TestDb, id: &str) -> (i64, String) {
    sqlx::query_as(
        "SELECT sequence, metadata->>'hash' FROM events WHERE aggregate_id = $1
          ORDER BY sequence DESC LIMIT 1",
    )
    .bind(id)
    .fetch_one(&db.owner)
    .await
    .unwrap()
}

/// Appends a well-formed event as the application's database role (which may INSERT):
/// the version 2 hash computed exactly as documented, signed by `signer` if given.
async fn forge(db: &TestDb, tenant: TenantId, id: &str, signer: Option<&EventSigningKey>) -> i64 {
    let (sequence, prev) = head(db, id).await;
    let sequence = sequence + 1;
    let recorded_at = chrono::Utc::now();
    let at = timestamp_text(recorded_at);
    let payload = canonical_json(&json!({"Tagged": {"tag": "forged"}}));
    let tenant_text = tenant.to_string();
    let hash = event_hash_v2(
        &HashInput {
            tenant_id: &tenant_text,
            aggregate_type: "file",
            aggregate_id: id,
            sequence: sequence as u64,
            event_type: "Tagged",
            event_version: "1",
            payload: &payload,
            prev_hash: &prev,
        },
        &Attribution {
            recorded_at: &at,
            actor: "system:worker",
            request_id: "r",
            correlation_id: "r",
            causation_id: "r",
        },
    );
    let mut meta: BTreeMap<&str, String> = BTreeMap::from([
        ("tenant_id", tenant_text.clone()),
        ("actor", "system:worker".into()),
        ("request_id", "r".into()),
        ("correlation_id", "r".into()),
        ("causation_id", "r".into()),
        ("hash_version", "2".into()),
        ("prev_hash", prev),
        ("hash", hash.clone()),
    ]);
    if let Some(signer) = signer {
        meta.insert("signature_key", signer.id().to_string());
        meta.insert("signature", signer.sign(&hex::decode(&hash).unwrap()));
    }
    sqlx::query(
        "INSERT INTO events (tenant_id, aggregate_type, aggregate_id, sequence, event_type,
                             event_version, payload, metadata, recorded_at)
         VALUES ($1, 'file', $2, $3, 'Tagged', '1', $4::json, $5::json, $6)",
    )
    .bind(tenant.0)
    .bind(id)
    .bind(sequence)
    .bind(payload)
    .bind(serde_json::to_string(&meta).unwrap())
    .bind(recorded_at)
    .execute(&db.app)
    .await
    .expect("the application role may append");
    sequence
}

fn broken_line(out: &str, tenant: TenantId, id: &str, sequence: i64, problem: &str) -> bool {
    out.contains(&format!(
        "BROKEN {tenant} file/{id} at sequence {sequence}: {problem}"
    ))
}

#[tokio::test]
async fn a_well_formed_forged_append_fails_verify_naming_it_and_is_never_signed() {
    let db = TestDb::new().await;
    let tenant = TenantId::new();
    let (plain, resigned) = (
        stream_of(&db, tenant, 2).await,
        stream_of(&db, tenant, 2).await,
    );
    let (code, out) = chronicle(&db, &["audit", "checkpoint"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = chronicle(&db, &["audit", "verify"]);
    assert_eq!(code, 0, "{out}");

    // No signature; a signature under the trusted key's id by another key; and a whole
    // stream that never existed.
    let at_plain = forge(&db, tenant, &plain, None).await;
    let attacker = EventSigningKey::new("k1", [9; 32]);
    let at_resigned = forge(&db, tenant, &resigned, Some(&attacker)).await;
    let forged_stream = Uuid::now_v7().to_string();
    forge_first(&db, tenant, &forged_stream).await;

    let (code, out) = chronicle(&db, &["audit", "verify"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        broken_line(&out, tenant, &plain, at_plain, "unvouched_event"),
        "{out}"
    );
    assert!(
        broken_line(&out, tenant, &resigned, at_resigned, "unvouched_event")
            && out.contains("does not verify"),
        "{out}"
    );
    assert!(
        broken_line(&out, tenant, &forged_stream, 1, "unvouched_event"),
        "{out}"
    );
    assert_eq!(out.matches("BROKEN").count(), 3, "{out}");

    // The checkpointer refuses to sign any of them (exit 1) and keeps the heads it
    // signed before; verify still names the forgeries.
    let (code, out) = chronicle(&db, &["audit", "checkpoint"]);
    assert_eq!(code, 1, "{out}");
    let signed: Vec<(String, i64)> = sqlx::query_as(
        "SELECT DISTINCT ON (aggregate_id) aggregate_id, last_sequence FROM checkpoint_heads
          ORDER BY aggregate_id, checkpoint_id DESC",
    )
    .fetch_all(&db.owner)
    .await
    .unwrap();
    assert!(
        signed.contains(&(plain.clone(), at_plain - 1)),
        "{signed:?}"
    );
    assert!(
        signed.contains(&(resigned.clone(), at_resigned - 1)),
        "{signed:?}"
    );
    assert!(
        !signed.iter().any(|(id, _)| *id == forged_stream),
        "{signed:?}"
    );
    let (code, out) = chronicle(&db, &["audit", "verify"]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(out.matches("unvouched_event").count(), 3, "{out}");
}

/// A new stream's first event, forged as the application role.
async fn forge_first(db: &TestDb, tenant: TenantId, id: &str) {
    let payload = canonical_json(
        &json!({"FileCreated": {"display_name": "x", "owner_id": tenant.to_string()}}),
    );
    let t = tenant.to_string();
    let at = chrono::Utc::now();
    let hash = event_hash_v2(
        &HashInput {
            tenant_id: &t,
            aggregate_type: "file",
            aggregate_id: id,
            sequence: 1,
            event_type: "FileCreated",
            event_version: "1",
            payload: &payload,
            prev_hash: chronicle::store::hash::GENESIS_HASH,
        },
        &Attribution {
            recorded_at: &timestamp_text(at),
            actor: "",
            request_id: "",
            correlation_id: "",
            causation_id: "",
        },
    );
    let meta = json!({"hash_version": "2", "hash": hash,
                      "prev_hash": chronicle::store::hash::GENESIS_HASH, "tenant_id": t});
    sqlx::query(
        "INSERT INTO events (tenant_id, aggregate_type, aggregate_id, sequence, event_type,
                             event_version, payload, metadata, recorded_at)
         VALUES ($1, 'file', $2, 1, 'FileCreated', '1', $3::json, $4::json, $5)",
    )
    .bind(tenant.0)
    .bind(id)
    .bind(payload)
    .bind(meta.to_string())
    .bind(at)
    .execute(&db.app)
    .await
    .unwrap();
}

#[tokio::test]
async fn who_and_when_edited_by_a_superuser_fail_verify_even_when_re_hashed() {
    let db = TestDb::new().await;
    let tenants: Vec<TenantId> = (0..4).map(|_| TenantId::new()).collect();
    let mut ids = Vec::new();
    for t in &tenants {
        ids.push(stream_of(&db, *t, 3).await);
    }
    let (code, out) = chronicle(&db, &["audit", "verify"]);
    assert_eq!(code, 0, "{out}");

    tamper(
        &db,
        r#"UPDATE events SET metadata = jsonb_set(metadata::jsonb, '{actor}', '"01890a5d-ac96-774b-bcce-b302099a8060"')::json
            WHERE aggregate_id = $1 AND sequence = 2"#,
        &ids[0],
    )
    .await;
    tamper(
        &db,
        "UPDATE events SET recorded_at = recorded_at - interval '1 day'
          WHERE aggregate_id = $1 AND sequence = 3",
        &ids[1],
    )
    .await;
    tamper(
        &db,
        r#"UPDATE events SET metadata = jsonb_set(metadata::jsonb, '{request_id}', '"other"')::json
            WHERE aggregate_id = $1 AND sequence = 4"#,
        &ids[2],
    )
    .await;
    // The actor changed, then the event and every later one re-hashed as documented:
    // the chain is consistent again, but no signature covers it.
    tamper(
        &db,
        r#"UPDATE events SET metadata = jsonb_set(metadata::jsonb, '{actor}', '"system:cli"')::json
            WHERE aggregate_id = $1 AND sequence = 2"#,
        &ids[3],
    )
    .await;
    rehash_from(&db, &ids[3], 2).await;
    assert!(
        verify_chains(&db.owner, Some(tenants[3]))
            .await
            .unwrap()
            .is_intact(),
        "the re-hashed chain is consistent"
    );

    let expected = [
        (2, "hash_mismatch"),
        (3, "hash_mismatch"),
        (4, "hash_mismatch"),
        (2, "unvouched_event"),
    ];
    for ((tenant, id), (sequence, problem)) in tenants.iter().zip(&ids).zip(expected) {
        let (code, out) = chronicle(&db, &["audit", "verify", "--tenant", &tenant.to_string()]);
        assert_eq!(code, 1, "{problem}: {out}");
        assert!(broken_line(&out, *tenant, id, sequence, problem), "{out}");
    }
}

/// tenant, sequence, event type and version, payload, metadata, recorded_at.
type StoredRow = (
    Uuid,
    i64,
    String,
    String,
    String,
    Value,
    chrono::DateTime<chrono::Utc>,
);

/// Recomputes the hashes of stream `id` from `from` on (the v2 encoding), as an
/// attacker who read docs/audit.md would; signatures are left as they were.
async fn rehash_from(db: &TestDb, id: &str, from: i64) {
    let rows: Vec<StoredRow> = sqlx::query_as(
        "SELECT tenant_id, sequence, event_type, event_version, payload::text,
                    metadata::jsonb, recorded_at
               FROM events WHERE aggregate_id = $1 ORDER BY sequence",
    )
    .bind(id)
    .fetch_all(&db.owner)
    .await
    .unwrap();
    let mut prev = String::new();
    for (tenant, sequence, event_type, version, payload, meta, at) in rows {
        if sequence < from {
            prev = meta["hash"].as_str().unwrap().to_string();
            continue;
        }
        let text = |k: &str| meta[k].as_str().unwrap_or_default().to_string();
        let hash = event_hash_v2(
            &HashInput {
                tenant_id: &tenant.to_string(),
                aggregate_type: "file",
                aggregate_id: id,
                sequence: sequence as u64,
                event_type: &event_type,
                event_version: &version,
                payload: &payload,
                prev_hash: &prev,
            },
            &Attribution {
                recorded_at: &timestamp_text(at),
                actor: &text("actor"),
                request_id: &text("request_id"),
                correlation_id: &text("correlation_id"),
                causation_id: &text("causation_id"),
            },
        );
        let sql = format!(
            "UPDATE events SET metadata = jsonb_set(jsonb_set(metadata::jsonb, '{{hash}}', '\"{hash}\"'),
                    '{{prev_hash}}', '\"{prev}\"')::json
              WHERE aggregate_id = $1 AND sequence = {sequence}"
        );
        tamper(db, &sql, id).await;
        prev = hash;
    }
}

/// The newest checkpoint's digest.
async fn newest_digest(db: &TestDb) -> (i64, String) {
    sqlx::query_as("SELECT id, digest FROM checkpoints ORDER BY id DESC LIMIT 1")
        .fetch_one(&db.owner)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_deleted_newest_checkpoint_is_reported_and_a_pinned_digest_calls_it_a_rollback() {
    let db = TestDb::new().await;
    let tenant = TenantId::new();
    let id = stream_of(&db, tenant, 1).await;
    assert_eq!(chronicle(&db, &["audit", "checkpoint"]).0, 0);
    for tag in ["x", "y"] {
        crate::audit_fixture::run(
            &db,
            tenant,
            &id,
            chronicle::aggregates::FileCommand::Tag { tag: tag.into() },
        )
        .await;
    }
    assert_eq!(chronicle(&db, &["audit", "checkpoint"]).0, 0);
    let (newest, pinned) = newest_digest(&db).await;
    let (code, out) = chronicle(&db, &["audit", "verify", "--trusted-digest", &pinned]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("unprotected {tenant}: 0 events")),
        "{out}"
    );

    // An insider deletes the newest checkpoint: the rest is a valid chain, but the two
    // events it covered are unprotected again — and the pinned digest is gone.
    let sql = format!("DELETE FROM checkpoint_heads WHERE checkpoint_id = {newest} AND $1 = $1");
    tamper(&db, &sql, "x").await;
    let sql = format!("DELETE FROM checkpoints WHERE id = {newest} AND $1 = $1");
    tamper(&db, &sql, "x").await;
    let (code, out) = chronicle(&db, &["audit", "verify"]);
    assert_eq!(code, 0, "nothing contradicts the remaining chain: {out}");
    assert!(
        out.contains(&format!(
            "unprotected {tenant}: 2 events in 1 streams (0 new)"
        )),
        "{out}"
    );
    let (code, out) = chronicle(&db, &["audit", "verify", "--trusted-digest", &pinned]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("checkpoint_rollback") && out.contains(&pinned),
        "{out}"
    );

    // A new checkpoint re-signs the same heads, but it is not the pinned one.
    assert_eq!(chronicle(&db, &["audit", "checkpoint"]).0, 0);
    let (code, out) = chronicle(&db, &["audit", "verify", "--trusted-digest", &pinned]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("checkpoint_rollback"), "{out}");

    // Deleting a checkpoint in the middle breaks the chain of checkpoints.
    crate::audit_fixture::run(
        &db,
        tenant,
        &id,
        chronicle::aggregates::FileCommand::Tag { tag: "z".into() },
    )
    .await;
    assert_eq!(chronicle(&db, &["audit", "checkpoint"]).0, 0);
    let (code, out) = chronicle(&db, &["audit", "verify"]);
    assert_eq!(code, 0, "{out}");
    let (middle, _) =
        sqlx::query_as::<_, (i64, i64)>("SELECT id, counter FROM checkpoints WHERE counter = 2")
            .fetch_one(&db.owner)
            .await
            .unwrap();
    let sql = format!("DELETE FROM checkpoint_heads WHERE checkpoint_id = {middle} AND $1 = $1");
    tamper(&db, &sql, "x").await;
    let sql = format!("DELETE FROM checkpoints WHERE id = {middle} AND $1 = $1");
    tamper(&db, &sql, "x").await;
    let (code, out) = chronicle(&db, &["audit", "verify"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("checkpoint_chain_broken"), "{out}");
}

/// A checkpoint as a binary before chained checkpoints wrote it (format 1).
async fn legacy_checkpoint(db: &TestDb, tenant: Uuid, key: &CheckpointKey, heads: Vec<Head>) {
    let mut heads = heads;
    sort_heads(&mut heads);
    let taken_at = chrono::Utc::now();
    let text = timestamp_text(taken_at);
    let d = digest(tenant, &text, None, &heads);
    use base64::Engine;
    use ed25519_dalek::Signer;
    let signature =
        base64::engine::general_purpose::STANDARD.encode(key.signing().sign(&d).to_bytes());
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO checkpoints (tenant_id, taken_at, streams, format, digest, signature, public_key)
         VALUES ($1, $2::text::timestamptz, $3, 1, $4, $5, $6) RETURNING id",
    )
    .bind(tenant)
    .bind(&text)
    .bind(heads.len() as i64)
    .bind(hex::encode(d))
    .bind(signature)
    .bind(key.public_base64())
    .fetch_one(&db.owner)
    .await
    .unwrap();
    for h in heads {
        sqlx::query(
            "INSERT INTO checkpoint_heads (checkpoint_id, tenant_id, aggregate_type, aggregate_id,
                                           last_sequence, last_hash)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id)
        .bind(tenant)
        .bind(h.aggregate_type)
        .bind(h.aggregate_id)
        .bind(h.sequence)
        .bind(h.hash)
        .execute(&db.owner)
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn events_of_the_previous_encoding_and_of_shredded_users_still_verify() {
    let db = TestDb::new().await;
    let tenant = Uuid::now_v7();
    let (old_user, covered, uncovered) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    // Written by the previous binary: version 1 hashes, no signatures.
    insert_as_old_binary(&db.owner, tenant, "user", &old_user.to_string(), &[
        ("UserRegistered", "1", json!({"UserRegistered": {"email": "old@example.com", "handle": "oldie", "name": "Old Timer", "role": "user"}})),
    ])
    .await;
    for file in [covered, uncovered] {
        insert_as_old_binary(&db.owner, tenant, "file", &file.to_string(), &[
            ("FileCreated", "1", json!({"FileCreated": {"display_name": "old.txt", "owner_id": old_user.to_string()}})),
            ("Tagged", "1", json!({"Tagged": {"tag": "old"}})),
        ])
        .await;
    }
    // …and checkpointed by it, except the last stream (written after that checkpoint).
    let (seq, hash) = head(&db, &covered.to_string()).await;
    let old_head = head(&db, &old_user.to_string()).await;
    legacy_checkpoint(
        &db,
        tenant,
        &key(),
        vec![
            Head {
                aggregate_type: "file".into(),
                aggregate_id: covered.to_string(),
                sequence: seq,
                hash,
            },
            Head {
                aggregate_type: "user".into(),
                aggregate_id: old_user.to_string(),
                sequence: old_head.0,
                hash: old_head.1,
            },
        ],
    )
    .await;

    // The new binary continues the old user's stream and registers a new user; then
    // both are erased (their data keys destroyed).
    let log = signed_log(&db);
    let users = ChronicleStore::<User>::new(log.clone(), TenantId(tenant), 1);
    let meta = EventMetadata::new(TenantId(tenant), Actor::System("test"), "req-1");
    let new_user = Uuid::now_v7();
    let register = UserCommand::Register {
        handle: "newbie".into(),
        name: "New Person".into(),
        email: "new@example.com".into(),
        role: Role::User,
    };
    commands::execute(&users, &new_user.to_string(), register, &meta, &())
        .await
        .unwrap();
    commands::execute(&users, &old_user.to_string(), UserCommand::Ban, &meta, &())
        .await
        .unwrap();
    for user in [old_user, new_user] {
        let erased = erase_user(&db.app, &log, 1, TenantId(tenant), UserId(user), &meta)
            .await
            .unwrap();
        assert_eq!(erased, Erasure::Erased);
    }
    let keys: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM personal_data_keys WHERE tenant_id = $1 AND data_key IS NULL",
    )
    .bind(tenant)
    .fetch_one(&db.owner)
    .await
    .unwrap();
    assert_eq!(keys, 2, "both users' keys are destroyed");
    assert!(verify_chains(&db.owner, None).await.unwrap().is_intact());

    // Everything verifies except the legacy stream no trusted checkpoint covers: nothing
    // tells it from an unsigned forgery but the operator's word, given once.
    let t = TenantId(tenant);
    let (code, out) = chronicle(&db, &["audit", "verify"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        broken_line(&out, t, &uncovered.to_string(), 1, "unvouched_event"),
        "{out}"
    );
    assert_eq!(out.matches("BROKEN").count(), 1, "{out}");
    let (code, out) = chronicle(&db, &["audit", "checkpoint"]);
    assert_eq!(
        code, 1,
        "the worker's checkpointer does not adopt it: {out}"
    );
    let (code, out) = chronicle(&db, &["audit", "checkpoint", "--adopt-unsigned"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = chronicle(&db, &["audit", "verify"]);
    assert_eq!(code, 0, "{out}");
    // The chain reaches back to the legacy checkpoint.
    let links: Vec<(i16, Option<i64>, Option<String>, String)> =
        sqlx::query_as("SELECT format, counter, prev_digest, digest FROM checkpoints ORDER BY id")
            .fetch_all(&db.owner)
            .await
            .unwrap();
    assert_eq!(links.len(), 3, "{links:?}");
    assert_eq!(links[1].0, 2);
    assert_eq!(
        (links[1].1, links[1].2.as_deref()),
        (Some(1), Some(links[0].3.as_str()))
    );
    assert_eq!(
        (links[2].1, links[2].2.as_deref()),
        (Some(2), Some(links[1].3.as_str()))
    );
}

#[tokio::test]
async fn the_database_refuses_sequence_zero_and_verify_refuses_non_canonical_payloads() {
    let db = TestDb::new().await;
    let tenant = TenantId::new();
    let err = sqlx::query(
        "INSERT INTO events (tenant_id, aggregate_type, aggregate_id, sequence, event_type,
                             event_version, payload, metadata)
         VALUES ($1, 'file', 'x', 0, 'E', '1', '{}', '{}')",
    )
    .bind(tenant.0)
    .execute(&db.app)
    .await
    .unwrap_err();
    let code = err
        .as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.to_string());
    assert_eq!(code.as_deref(), Some("23514"), "a CHECK violation: {err}");

    // A payload with a duplicate key, hashed over its canonical form (what a lenient
    // reader would compute): the stored text is not what was hashed.
    let id = stream_of(&db, tenant, 1).await;
    tamper(
        &db,
        r#"UPDATE events SET payload = '{"Tagged":{"tag":"evil","tag":"t0"}}' WHERE aggregate_id = $1 AND sequence = 2"#,
        &id,
    )
    .await;
    let (code, out) = chronicle(&db, &["audit", "verify"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        broken_line(&out, tenant, &id, 2, "non_canonical_payload"),
        "{out}"
    );
}
