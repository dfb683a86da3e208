//! Signed checkpoints and `audit verify`: a checkpoint of an intact log verifies and
//! stores only the heads that moved; a deleted or replaced stream tail after a
//! checkpoint, a tampered checkpoint and a forged signature are each reported; and the
//! real binary exits 1 on each kind of break (edit, delete, reorder, truncate).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chronicle::aggregates::FileCommand;
use chronicle::config::CheckpointKey;
use chronicle::ids::TenantId;
use chronicle::store::checkpoint::{current_heads, heads_at};
use chronicle::store::verify::{BreakKind, verify_chains};
use ed25519_dalek::Signer;

pub use crate::audit_fixture::tamper;
use crate::audit_fixture::{breaks, checkpoint, chronicle, key, report, run, stream_of};
use crate::common::TestDb;

#[tokio::test]
async fn checkpoints_of_an_intact_log_verify_and_store_only_moved_heads() {
    let db = TestDb::new().await;
    let (a, b) = (TenantId::new(), TenantId::new());
    let first = stream_of(&db, a, 2).await;
    stream_of(&db, a, 1).await;
    stream_of(&db, b, 0).await;
    let taken = checkpoint(&db).await;
    assert_eq!(taken.len(), 2, "{taken:?}");
    let of_a = taken.iter().find(|c| c.tenant_id == a.0).unwrap();
    assert_eq!((of_a.streams, of_a.changed), (2, 2));

    let report = report(&db, None).await;
    assert!(report.is_intact(), "{:?}", report.breaks);
    assert_eq!(report.checkpoints.len(), 2);
    assert!(report.checkpoint_key_trusted);

    // Nothing moved: no new checkpoint.
    assert!(checkpoint(&db).await.is_empty());
    // One stream moved: the new checkpoint stores that head only but signs all.
    run(&db, a, &first, FileCommand::Tag { tag: "late".into() }).await;
    let taken = checkpoint(&db).await;
    assert_eq!(taken.len(), 1);
    assert_eq!((taken[0].streams, taken[0].changed), (2, 1));
    let mut conn = db.worker.acquire().await.unwrap();
    let signed = heads_at(&mut conn, a.0, taken[0].id).await.unwrap();
    assert_eq!(signed, current_heads(&mut conn, a.0).await.unwrap());
    assert!(breaks(&db, a).await.is_empty());
}

#[tokio::test]
async fn a_truncated_tail_after_a_checkpoint_is_detected_though_the_chain_is_valid() {
    let db = TestDb::new().await;
    let tenant = TenantId::new();
    let id = stream_of(&db, tenant, 4).await;
    stream_of(&db, tenant, 1).await; // an untouched neighbour stays green
    checkpoint(&db).await;
    tamper(
        &db,
        "DELETE FROM events WHERE aggregate_id = $1 AND sequence = 5",
        &id,
    )
    .await;

    let chains_only = verify_chains(&db.worker, Some(tenant)).await.unwrap();
    assert!(
        chains_only.is_intact(),
        "a shorter chain is still a valid chain"
    );
    // The next checkpoint round must not launder the truncation by signing the
    // shortened stream (another stream moving makes that round take a checkpoint).
    for round in 0..2 {
        let found = breaks(&db, tenant).await;
        assert_eq!(found.len(), 1, "round {round}: {found:?}");
        let b = &found[0];
        assert_eq!((b.aggregate_id.as_str(), b.sequence), (id.as_str(), 5));
        assert_eq!(b.problem, BreakKind::TruncatedTail);
        assert_eq!(b.found, "stream ends at sequence 4");
        stream_of(&db, tenant, 0).await;
        assert_eq!(checkpoint(&db).await.len(), 1);
    }
}

#[tokio::test]
async fn a_replaced_tail_after_a_checkpoint_is_detected() {
    let db = TestDb::new().await;
    let tenant = TenantId::new();
    let id = stream_of(&db, tenant, 3).await;
    checkpoint(&db).await;
    // Delete the last event (and the snapshot that remembers it), then append another:
    // the chain is valid again, but sequence 4 is not the event that was signed.
    tamper(
        &db,
        "DELETE FROM events WHERE aggregate_id = $1 AND sequence = 4",
        &id,
    )
    .await;
    tamper(&db, "DELETE FROM snapshots WHERE aggregate_id = $1", &id).await;
    run(
        &db,
        tenant,
        &id,
        FileCommand::Tag {
            tag: "other".into(),
        },
    )
    .await;
    assert!(
        verify_chains(&db.worker, Some(tenant))
            .await
            .unwrap()
            .is_intact()
    );
    for round in 0..2 {
        let found = breaks(&db, tenant).await;
        assert_eq!(found.len(), 1, "round {round}: {found:?}");
        assert_eq!(
            (found[0].sequence, found[0].problem),
            (4, BreakKind::CheckpointHeadMismatch)
        );
        // Growing the replaced stream further must not get it re-signed either.
        let tag = format!("more{round}");
        run(&db, tenant, &id, FileCommand::Tag { tag }).await;
        stream_of(&db, tenant, 0).await;
        assert_eq!(checkpoint(&db).await.len(), 1);
    }
}

#[tokio::test]
async fn tampered_checkpoints_and_forged_signatures_are_detected() {
    let db = TestDb::new().await;
    let tenant = TenantId::new();
    let id = stream_of(&db, tenant, 1).await;
    let taken = checkpoint(&db).await;
    let cid = taken[0].id.to_string();

    // A damaged signature.
    let wrong = STANDARD.encode(key().signing().sign(b"something else").to_bytes());
    let sql = format!("UPDATE checkpoints SET signature = '{wrong}' WHERE id = $1::bigint");
    tamper(&db, &sql, &cid).await;
    let found = breaks(&db, tenant).await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].problem, BreakKind::CheckpointSignatureInvalid);
    assert_eq!(
        (
            found[0].aggregate_type.as_str(),
            found[0].aggregate_id.as_str()
        ),
        ("checkpoint", cid.as_str())
    );

    // Re-signed by an attacker's key, stored beside it: the configured key refuses it.
    let digest: String = sqlx::query_scalar("SELECT digest FROM checkpoints WHERE id = $1::bigint")
        .bind(&cid)
        .fetch_one(&db.owner)
        .await
        .unwrap();
    let attacker = CheckpointKey::from_seed([9; 32]);
    let forged = STANDARD.encode(
        attacker
            .signing()
            .sign(&hex::decode(&digest).unwrap())
            .to_bytes(),
    );
    let sql = format!(
        "UPDATE checkpoints SET signature = '{forged}', public_key = '{}' WHERE id = $1::bigint",
        attacker.public_base64()
    );
    tamper(&db, &sql, &cid).await;
    let found = breaks(&db, tenant).await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].problem, BreakKind::CheckpointSignatureInvalid);

    // A signed head rewritten to hide a truncation: the digest no longer matches.
    tamper(
        &db,
        "UPDATE checkpoint_heads SET last_sequence = 1, last_hash = 'x' WHERE aggregate_id = $1",
        &id,
    )
    .await;
    let kinds: Vec<BreakKind> = breaks(&db, tenant)
        .await
        .iter()
        .map(|b| b.problem)
        .collect();
    assert!(
        kinds.contains(&BreakKind::CheckpointDigestMismatch),
        "{kinds:?}"
    );
}

#[tokio::test]
async fn the_verify_command_exits_1_on_each_kind_of_break_and_0_when_intact() {
    let db = TestDb::new().await;
    let tenants: Vec<TenantId> = (0..5).map(|_| TenantId::new()).collect();
    let mut ids = Vec::new();
    for t in &tenants {
        ids.push(stream_of(&db, *t, 4).await);
    }
    let (code, out) = chronicle(&db, &["audit", "checkpoint"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.matches("checkpoint ").count(), 5, "{out}");
    let (code, out) = chronicle(&db, &["audit", "verify"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("5 streams, 25 events checked"), "{out}");

    let edit = r#"UPDATE events SET payload = '{"Tagged":{"tag":"forged"}}' WHERE aggregate_id = $1 AND sequence = 3"#;
    tamper(&db, edit, &ids[0]).await;
    tamper(
        &db,
        "DELETE FROM events WHERE aggregate_id = $1 AND sequence = 2",
        &ids[1],
    )
    .await;
    for sql in [
        "UPDATE events SET sequence = 1000 WHERE aggregate_id = $1 AND sequence = 2",
        "UPDATE events SET sequence = 2 WHERE aggregate_id = $1 AND sequence = 3",
        "UPDATE events SET sequence = 3 WHERE aggregate_id = $1 AND sequence = 1000",
    ] {
        tamper(&db, sql, &ids[2]).await;
    }
    tamper(
        &db,
        "DELETE FROM events WHERE aggregate_id = $1 AND sequence >= 4",
        &ids[3],
    )
    .await;
    let expected = [
        "hash_mismatch",
        "sequence_gap",
        "prev_hash_mismatch",
        "truncated_tail",
    ];
    for (tenant, kind) in tenants.iter().zip(expected) {
        let (code, out) = chronicle(&db, &["audit", "verify", "--tenant", &tenant.to_string()]);
        assert_eq!(code, 1, "{kind}: {out}");
        assert!(
            out.contains(&format!("BROKEN {tenant}")) && out.contains(kind),
            "{kind}: {out}"
        );
    }
    let (code, out) = chronicle(
        &db,
        &["audit", "verify", "--tenant", &tenants[4].to_string()],
    );
    assert_eq!(code, 0, "the untouched tenant stays green: {out}");
    let (code, out) = chronicle(&db, &["audit", "public-key"]);
    assert_eq!((code, out.trim()), (0, key().public_base64().as_str()));
}
