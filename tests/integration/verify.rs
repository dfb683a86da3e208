//! The hash-chain verifier finds an edited payload, a deleted event and a swapped pair.
//! Tampering needs the append-only trigger out of the way, as an attacker with
//! superuser access would do (`session_replication_role = replica` skips triggers).

use chronicle::aggregates::{File, FileCommand};
use chronicle::commands;
use chronicle::ids::{TenantId, UserId};
use chronicle::store::verify::{BreakKind, verify_chains};
use chronicle::store::{Actor, ChronicleStore, EventLog, EventMetadata};

use crate::common::TestDb;

async fn stream_of(db: &TestDb, tenant: TenantId, tags: usize) -> String {
    let store = ChronicleStore::<File>::new(EventLog::new(db.app.clone()), tenant, 100);
    let m = EventMetadata::system(tenant, Actor::System("test"));
    let id = uuid::Uuid::now_v7().to_string();
    let create = FileCommand::Create {
        owner_id: UserId::new(),
        display_name: "a".into(),
    };
    commands::execute(&store, &id, create, &m, &())
        .await
        .unwrap();
    for i in 0..tags {
        commands::execute(
            &store,
            &id,
            FileCommand::Tag {
                tag: format!("t{i}"),
            },
            &m,
            &(),
        )
        .await
        .unwrap();
    }
    id
}

async fn tamper(db: &TestDb, sql: &str, id: &str) {
    let mut tx = db.owner.begin().await.unwrap();
    sqlx::query("SET LOCAL session_replication_role = replica")
        .execute(&mut *tx)
        .await
        .unwrap();
    let done = sqlx::query(sql).bind(id).execute(&mut *tx).await.unwrap();
    assert!(done.rows_affected() > 0, "tampering changed nothing: {sql}");
    tx.commit().await.unwrap();
}

async fn single_break(db: &TestDb, id: &str) -> chronicle::store::verify::ChainBreak {
    let report = verify_chains(&db.owner, None).await.unwrap();
    assert_eq!(report.breaks.len(), 1, "{:?}", report.breaks);
    let b = report.breaks.into_iter().next().unwrap();
    assert_eq!(b.aggregate_id, id);
    b
}

#[tokio::test]
async fn an_intact_log_verifies() {
    let db = TestDb::new().await;
    let tenant = TenantId::new();
    for _ in 0..3 {
        stream_of(&db, tenant, 4).await;
    }
    stream_of(&db, TenantId::new(), 2).await;
    let report = verify_chains(&db.owner, None).await.unwrap();
    assert!(report.is_intact(), "{:?}", report.breaks);
    assert_eq!((report.streams, report.events), (4, 18));
    let one = verify_chains(&db.owner, Some(tenant)).await.unwrap();
    assert_eq!((one.streams, one.events), (3, 15));
}

#[tokio::test]
async fn an_edited_payload_is_detected() {
    let db = TestDb::new().await;
    let id = stream_of(&db, TenantId::new(), 3).await;
    stream_of(&db, TenantId::new(), 3).await; // an untouched neighbour stays green
    tamper(&db, r#"UPDATE events SET payload = '{"Tagged":{"tag":"forged"}}' WHERE aggregate_id = $1 AND sequence = 3"#, &id).await;
    let b = single_break(&db, &id).await;
    assert_eq!((b.sequence, b.problem), (3, BreakKind::HashMismatch));
}

#[tokio::test]
async fn a_deleted_event_is_detected() {
    let db = TestDb::new().await;
    let id = stream_of(&db, TenantId::new(), 3).await;
    tamper(
        &db,
        "DELETE FROM events WHERE aggregate_id = $1 AND sequence = 2",
        &id,
    )
    .await;
    let b = single_break(&db, &id).await;
    assert_eq!((b.sequence, b.problem), (3, BreakKind::SequenceGap));
}

#[tokio::test]
async fn a_deleted_event_with_renumbered_successors_is_detected() {
    let db = TestDb::new().await;
    let id = stream_of(&db, TenantId::new(), 3).await;
    tamper(
        &db,
        "DELETE FROM events WHERE aggregate_id = $1 AND sequence = 2",
        &id,
    )
    .await;
    tamper(
        &db,
        "UPDATE events SET sequence = sequence - 1 WHERE aggregate_id = $1 AND sequence > 2",
        &id,
    )
    .await;
    let b = single_break(&db, &id).await;
    assert_eq!((b.sequence, b.problem), (2, BreakKind::PrevHashMismatch));
}

#[tokio::test]
async fn a_swapped_pair_is_detected() {
    let db = TestDb::new().await;
    let id = stream_of(&db, TenantId::new(), 4).await;
    // Swap the positions of events 2 and 3 (sequence numbers exchanged).
    tamper(
        &db,
        "UPDATE events SET sequence = 1000 WHERE aggregate_id = $1 AND sequence = 2",
        &id,
    )
    .await;
    tamper(
        &db,
        "UPDATE events SET sequence = 2 WHERE aggregate_id = $1 AND sequence = 3",
        &id,
    )
    .await;
    tamper(
        &db,
        "UPDATE events SET sequence = 3 WHERE aggregate_id = $1 AND sequence = 1000",
        &id,
    )
    .await;
    let b = single_break(&db, &id).await;
    assert_eq!(b.sequence, 2);
    assert_eq!(b.problem, BreakKind::PrevHashMismatch);
}
