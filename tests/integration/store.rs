//! The event store: snapshots are correct, metadata and the hash chain are on every
//! event, conflicts retry, tenants are separated, history is append-only.

use std::collections::HashSet;

use chronicle::aggregates::file::NewVersion;
use chronicle::aggregates::{File, FileCommand};
use chronicle::commands::{self, CommandError};
use chronicle::ids::{TenantId, UserId};
use chronicle::store::{Actor, ChronicleStore, EventLog, EventMetadata};
use cqrs_es::{Aggregate, EventStore};
use proptest::prelude::*;
use sqlx::Row;

use crate::common::TestDb;

fn meta(tenant: TenantId) -> EventMetadata {
    EventMetadata::system(tenant, Actor::System("test"))
}

fn command_strategy() -> impl Strategy<Value = FileCommand> {
    let owner = UserId(uuid::Uuid::nil());
    prop_oneof![
        "[a-z]{1,8}".prop_map(move |n| FileCommand::Create {
            owner_id: owner,
            display_name: n
        }),
        "[a-z]{1,8}".prop_map(|n| FileCommand::Rename { display_name: n }),
        "[a-c]".prop_map(|t| FileCommand::Tag { tag: t }),
        "[a-c]".prop_map(|t| FileCommand::Untag { tag: t }),
        Just(FileCommand::Delete),
        Just(FileCommand::Restore),
        (1u64..10_000).prop_map(|size| FileCommand::Upload(NewVersion {
            filename: "f.bin".into(),
            declared_mime: "application/octet-stream".into(),
            size_bytes: size,
            temp_location: "tmp/x".into(),
            sha256: format!("{size:064x}"),
        })),
    ]
}

/// The reference: the same commands decided and applied in memory.
fn model(commands: &[FileCommand]) -> File {
    let mut file = File::default();
    for c in commands {
        if let Ok(events) = file.decide(c.clone()) {
            for e in events {
                file.apply(e);
            }
        }
    }
    file
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, .. ProptestConfig::default() })]

    /// State from snapshot + tail == state from full replay == the in-memory model,
    /// whatever the command sequence and snapshot frequency.
    #[test]
    fn snapshot_plus_tail_equals_full_replay(
        commands in proptest::collection::vec(command_strategy(), 1..60),
        snapshot_every in 1u64..8,
    ) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let db = TestDb::new().await;
            let tenant = TenantId::new();
            let store = ChronicleStore::<File>::new(EventLog::new(db.app.clone()), tenant, snapshot_every);
            let id = uuid::Uuid::now_v7().to_string();
            let mut appended = 0u64;
            for c in &commands {
                if let Ok(done) = commands::execute(&store, &id, c.clone(), &meta(tenant), &()).await {
                    appended += done.events.len() as u64;
                }
            }
            let from_snapshot = store.load_aggregate(&id).await.unwrap();
            let replayed = store.load_full_replay(&id).await.unwrap();
            assert_eq!(from_snapshot.aggregate, replayed.aggregate);
            assert_eq!(from_snapshot.aggregate, model(&commands));
            assert_eq!(from_snapshot.current_sequence, appended);
            assert_eq!(from_snapshot.last_hash, replayed.last_hash);
            if appended >= snapshot_every {
                assert!(from_snapshot.snapshot_sequence > 0, "a snapshot was taken");
                assert!(appended - from_snapshot.snapshot_sequence < snapshot_every);
            }
        });
    }
}

async fn create_with_events(store: &ChronicleStore<File>, n_tags: usize) -> String {
    let tenant = store.tenant();
    let id = uuid::Uuid::now_v7().to_string();
    let create = FileCommand::Create {
        owner_id: UserId::new(),
        display_name: "a.txt".into(),
    };
    commands::execute(store, &id, create, &meta(tenant), &())
        .await
        .unwrap();
    for i in 0..n_tags {
        commands::execute(
            store,
            &id,
            FileCommand::Tag {
                tag: format!("t{i}"),
            },
            &meta(tenant),
            &(),
        )
        .await
        .unwrap();
    }
    id
}

#[tokio::test]
async fn unreadable_snapshot_falls_back_to_replay_and_is_replaced() {
    let db = TestDb::new().await;
    let store = ChronicleStore::<File>::new(EventLog::new(db.app.clone()), TenantId::new(), 3);
    let id = create_with_events(&store, 6).await;
    // The aggregate's shape "changed": the stored snapshot no longer deserializes.
    let changed = sqlx::query(
        "UPDATE snapshots SET payload = '{\"legacy_layout\": [1, 2]}' WHERE aggregate_id = $1",
    )
    .bind(&id)
    .execute(&db.owner)
    .await
    .unwrap();
    assert_eq!(changed.rows_affected(), 1);

    let loaded = store
        .load_aggregate(&id)
        .await
        .expect("falls back instead of failing");
    let replayed = store.load_full_replay(&id).await.unwrap();
    assert_eq!(loaded.aggregate, replayed.aggregate);
    assert_eq!(loaded.aggregate.tags.len(), 6);

    let payload: String =
        sqlx::query_scalar("SELECT payload::text FROM snapshots WHERE aggregate_id = $1")
            .bind(&id)
            .fetch_one(&db.owner)
            .await
            .unwrap();
    let snapshot: File =
        serde_json::from_str(&payload).expect("snapshot was replaced with a readable one");
    assert_eq!(snapshot, replayed.aggregate);
}

#[tokio::test]
async fn every_event_carries_metadata_and_chains_to_its_predecessor() {
    let db = TestDb::new().await;
    let tenant = TenantId::new();
    let store = ChronicleStore::<File>::new(EventLog::new(db.app.clone()), tenant, 100);
    let user = UserId::new();
    let id = uuid::Uuid::now_v7().to_string();
    let m = EventMetadata::new(tenant, Actor::User(user), "req-1");
    commands::execute(
        &store,
        &id,
        FileCommand::Create {
            owner_id: user,
            display_name: "x".into(),
        },
        &m,
        &(),
    )
    .await
    .unwrap();
    commands::execute(
        &store,
        &id,
        FileCommand::Rename {
            display_name: "y".into(),
        },
        &m,
        &(),
    )
    .await
    .unwrap();

    let rows = sqlx::query("SELECT sequence, tenant_id, metadata::text AS m FROM events WHERE aggregate_id = $1 ORDER BY sequence")
        .bind(&id)
        .fetch_all(&db.owner)
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    let mut prev = "0".repeat(64);
    for row in rows {
        let tenant_col: uuid::Uuid = row.get("tenant_id");
        assert_eq!(tenant_col, tenant.0);
        let m: serde_json::Value = serde_json::from_str(&row.get::<String, _>("m")).unwrap();
        assert_eq!(m["tenant_id"], tenant.to_string());
        assert_eq!(m["actor"], user.to_string());
        assert_eq!(m["request_id"], "req-1");
        assert_eq!(m["correlation_id"], "req-1");
        assert_eq!(m["causation_id"], "req-1");
        assert_eq!(m["prev_hash"], prev.as_str());
        let hash = m["hash"].as_str().unwrap().to_string();
        assert_eq!(hash.len(), 64);
        prev = hash;
    }
}

#[tokio::test]
async fn concurrent_commands_on_one_stream_all_land_through_retries() {
    let db = TestDb::new().await;
    let store = ChronicleStore::<File>::new(EventLog::new(db.app.clone()), TenantId::new(), 4);
    let id = create_with_events(&store, 0).await;
    let tasks: Vec<_> = (0..5)
        .map(|i| {
            let store = store.clone();
            let id = id.clone();
            tokio::spawn(async move {
                let m = meta(store.tenant());
                commands::execute(
                    &store,
                    &id,
                    FileCommand::Tag {
                        tag: format!("c{i}"),
                    },
                    &m,
                    &(),
                )
                .await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().expect("retries absorb the conflicts");
    }
    let state = store.load_aggregate(&id).await.unwrap();
    assert_eq!(state.aggregate.tags.len(), 5);
    assert_eq!(state.current_sequence, 6);
    let report = chronicle::store::verify::verify_chains(&db.owner, None)
        .await
        .unwrap();
    assert!(report.is_intact(), "{:?}", report.breaks);
}

#[tokio::test]
async fn a_stale_append_is_a_conflict_not_an_overwrite() {
    let db = TestDb::new().await;
    let store = ChronicleStore::<File>::new(EventLog::new(db.app.clone()), TenantId::new(), 100);
    let id = create_with_events(&store, 1).await;
    let stale = store.load_aggregate(&id).await.unwrap();
    commands::execute(
        &store,
        &id,
        FileCommand::Tag {
            tag: "winner".into(),
        },
        &meta(store.tenant()),
        &(),
    )
    .await
    .unwrap();
    let event = chronicle::aggregates::FileEvent::Tagged {
        tag: "loser".into(),
    };
    let err = store
        .commit(vec![event], stale, meta(store.tenant()).to_map())
        .await
        .unwrap_err();
    assert!(
        matches!(err, cqrs_es::AggregateError::AggregateConflict),
        "{err:?}"
    );
    let tags = store.load_aggregate(&id).await.unwrap().aggregate.tags;
    assert!(tags.contains("winner") && !tags.contains("loser"));
}

#[tokio::test]
async fn conflicts_that_outlast_the_retries_surface_as_409() {
    use axum::response::IntoResponse;
    let err: chronicle::error::AppError =
        CommandError::<chronicle::aggregates::FileError>::Conflict.into();
    let response = err.into_response();
    assert_eq!(response.status(), 409);
}

#[tokio::test]
async fn a_tenant_cannot_see_or_extend_another_tenants_stream() {
    let db = TestDb::new().await;
    let a = ChronicleStore::<File>::new(EventLog::new(db.app.clone()), TenantId::new(), 100);
    let b = ChronicleStore::<File>::new(EventLog::new(db.app.clone()), TenantId::new(), 100);
    let id = create_with_events(&a, 2).await;
    let seen_by_b = b.load_aggregate(&id).await.unwrap();
    assert_eq!(seen_by_b.current_sequence, 0);
    assert!(!seen_by_b.aggregate.exists);
    let err = commands::execute(
        &b,
        &id,
        FileCommand::Rename {
            display_name: "mine".into(),
        },
        &meta(b.tenant()),
        &(),
    )
    .await
    .unwrap_err();
    assert!(matches!(
        err,
        CommandError::Domain(chronicle::aggregates::FileError::NotFound)
    ));
    assert!(b.load_events(&id).await.unwrap().is_empty());
}

#[tokio::test]
async fn history_is_append_only_for_every_role() {
    let db = TestDb::new().await;
    let store = ChronicleStore::<File>::new(EventLog::new(db.app.clone()), TenantId::new(), 100);
    let id = create_with_events(&store, 1).await;
    for (role, pool) in [
        ("app", &db.app),
        ("worker", &db.worker),
        ("owner", &db.owner),
    ] {
        for sql in [
            "UPDATE events SET payload = '{}' WHERE aggregate_id = $1",
            "DELETE FROM events WHERE aggregate_id = $1",
        ] {
            let result = sqlx::query(sql).bind(&id).execute(pool).await;
            assert!(result.is_err(), "{role} could run {sql}");
        }
        let truncate = sqlx::query("TRUNCATE events").execute(pool).await;
        assert!(truncate.is_err(), "{role} could truncate events");
    }
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_id = $1")
        .bind(&id)
        .fetch_one(&db.owner)
        .await
        .unwrap();
    assert_eq!(count, 2);
    // And the runtime roles are neither superuser nor BYPASSRLS.
    let unsafe_roles: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_roles WHERE rolname IN ('chronicle_app', 'chronicle_worker') AND (rolsuper OR rolbypassrls)",
    )
    .fetch_one(&db.owner)
    .await
    .unwrap();
    assert_eq!(unsafe_roles, 0);
    let distinct: HashSet<String> = sqlx::query_scalar("SELECT current_user::text")
        .fetch_all(&db.app)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert!(distinct.contains("chronicle_app"));
}
