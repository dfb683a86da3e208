//! Old event versions in a real database: rows written the way a pre-v2 binary wrote
//! them (plaintext personal fields, event_version '1', a valid hash chain) load, replay
//! and rebuild into the current state through the upcasters — and erasing their user
//! redacts them on every read even though their plaintext cannot be shredded.

use std::collections::BTreeMap;

use chronicle::aggregates::session::RevokeReason;
use chronicle::aggregates::{Role, Session, SessionCommand, User, UserCommand};
use chronicle::commands;
use chronicle::commands::erase::{Erasure, erase_user};
use chronicle::ids::{TenantId, UserId};
use chronicle::store::hash::{GENESIS_HASH, HashInput, canonical_json, event_hash};
use chronicle::store::metadata::keys;
use chronicle::store::verify::verify_chains;
use chronicle::store::{Actor, ChronicleStore, EventLog, EventMetadata};
use cqrs_es::EventStore;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::common::TestDb;
use crate::erasure::{PERSONAL_TABLES, catch_up_all, contents, rebuild_all};

/// Appends `events` to a stream as an old binary did: its own version strings and
/// payloads, hashed over canonical JSON and chained from genesis.
pub async fn insert_as_old_binary(
    owner: &PgPool,
    tenant: Uuid,
    aggregate_type: &str,
    aggregate_id: &str,
    events: &[(&str, &str, Value)],
) {
    let mut prev = GENESIS_HASH.to_string();
    for (i, (event_type, version, payload)) in events.iter().enumerate() {
        let sequence = i as u64 + 1;
        let canonical = canonical_json(payload);
        let hash = event_hash(&HashInput {
            tenant_id: &tenant.to_string(),
            aggregate_type,
            aggregate_id,
            sequence,
            event_type,
            event_version: version,
            payload: &canonical,
            prev_hash: &prev,
        });
        let metadata = BTreeMap::from([
            (keys::TENANT_ID, tenant.to_string()),
            (keys::ACTOR, "system:old-binary".to_string()),
            (keys::PREV_HASH, std::mem::replace(&mut prev, hash.clone())),
            (keys::HASH, hash),
        ]);
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, tenant_id)
             VALUES ($1, $2, $3, $4, $5, $6::json, $7::json, $8)",
        )
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(sequence as i64)
        .bind(event_type)
        .bind(version)
        .bind(canonical)
        .bind(serde_json::to_string(&metadata).unwrap())
        .bind(tenant)
        .execute(owner)
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn v1_events_load_replay_rebuild_and_erase_through_the_upcasters() {
    let db = TestDb::new().await;
    let (tenant, user, session) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    insert_as_old_binary(&db.owner, tenant, "user", &user.to_string(), &[
        ("UserRegistered", "1", json!({"UserRegistered": {"email": "old.timer@example.com", "handle": "oldie", "name": "Old Timer", "role": "user"}})),
        ("RoleChanged", "1", json!({"RoleChanged": {"role": "auditor"}})),
    ])
    .await;
    insert_as_old_binary(&db.owner, tenant, "session", &session.to_string(), &[
        ("SessionStarted", "1", json!({"SessionStarted": {"ip": "198.51.100.23", "refresh_expires_at": 4_000_000_000i64, "refresh_hash": "aa", "user_agent": "OldBrowser/1.0", "user_id": user.to_string()}})),
    ])
    .await;
    assert!(verify_chains(&db.owner, None).await.unwrap().is_intact());

    // The aggregates load from v1 events (snapshot_every 1: snapshots are exercised too).
    let log = EventLog::new(db.app.clone());
    let users = ChronicleStore::<User>::new(log.clone(), TenantId(tenant), 1);
    let state = users
        .load_aggregate(&user.to_string())
        .await
        .unwrap()
        .aggregate;
    assert_eq!(
        (state.name.as_str(), state.email.as_str(), state.role),
        ("Old Timer", "old.timer@example.com", Some(Role::Auditor))
    );
    let sessions = ChronicleStore::<Session>::new(log.clone(), TenantId(tenant), 1);
    let s = sessions
        .load_aggregate(&session.to_string())
        .await
        .unwrap()
        .aggregate;
    assert_eq!(s.user_id, Some(UserId(user)));

    // Projections read them in their current form.
    catch_up_all(&db.worker).await;
    let row: (String, String, String) =
        sqlx::query_as("SELECT name, email, role FROM users WHERE id = $1")
            .bind(user)
            .fetch_one(&db.worker)
            .await
            .unwrap();
    assert_eq!(
        row,
        (
            "Old Timer".into(),
            "old.timer@example.com".into(),
            "auditor".into()
        )
    );
    let ips: Vec<String> = sqlx::query_scalar("SELECT ip_address FROM locations")
        .fetch_all(&db.worker)
        .await
        .unwrap();
    assert_eq!(ips, ["198.51.100.23"]);

    // New events on top are written as v2: a key is created for the pre-v2 user on
    // first use, and the new session's fields are sealed.
    let meta = EventMetadata::new(TenantId(tenant), Actor::System("test"), "req-1");
    commands::execute(&users, &user.to_string(), UserCommand::Ban, &meta, &())
        .await
        .unwrap();
    let new_session = Uuid::now_v7();
    let start = SessionCommand::Start {
        user_id: UserId(user),
        user_agent: "NewBrowser/2.0".into(),
        ip: "192.0.2.99".into(),
        refresh_hash: "bb".into(),
        refresh_expires_at: 4_000_000_000,
    };
    commands::execute(&sessions, &new_session.to_string(), start, &meta, &())
        .await
        .unwrap();
    let (version, payload): (String, String) =
        sqlx::query_as("SELECT event_version, payload::text FROM events WHERE aggregate_id = $1")
            .bind(new_session.to_string())
            .fetch_one(&db.owner)
            .await
            .unwrap();
    assert_eq!(version, "2");
    assert!(
        payload.contains("aes256gcm")
            && !payload.contains("NewBrowser")
            && !payload.contains("192.0.2.99")
    );
    catch_up_all(&db.worker).await;
    let agents: Vec<String> =
        sqlx::query_scalar("SELECT user_agent FROM sessions ORDER BY created_at")
            .fetch_all(&db.worker)
            .await
            .unwrap();
    assert_eq!(agents, ["OldBrowser/1.0", "NewBrowser/2.0"]);

    let snapshots_with_name = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM snapshots WHERE payload::text LIKE '%Old Timer%'",
        )
        .fetch_one(&db.owner)
        .await
        .unwrap()
    };
    assert_eq!(
        snapshots_with_name().await,
        1,
        "the user's snapshot holds the opened name"
    );

    // Erase: the v1 plaintext cannot be shredded, so the event says how much remains…
    assert_eq!(
        erase_user(&db.app, &log, 1, TenantId(tenant), UserId(user), &meta)
            .await
            .unwrap(),
        Erasure::Erased
    );
    let erased: Value =
        sqlx::query_scalar("SELECT payload::jsonb FROM events WHERE event_type = 'UserErased'")
            .fetch_one(&db.owner)
            .await
            .unwrap();
    assert_eq!(erased, json!({"UserErased": {"plaintext_events": 2}}));
    let log_text: String = sqlx::query_scalar("SELECT string_agg(payload::text, ' ') FROM events")
        .fetch_one(&db.owner)
        .await
        .unwrap();
    assert!(log_text.contains("Old Timer") && !log_text.contains("NewBrowser"));
    assert_eq!(
        snapshots_with_name().await,
        0,
        "erasure drops the user's snapshot"
    );
    // …and every read redacts it: aggregate, live read tables, rebuilt read tables.
    let state = users
        .load_aggregate(&user.to_string())
        .await
        .unwrap()
        .aggregate;
    assert_eq!(
        (state.name.as_str(), state.email.as_str()),
        ("[erased]", "[erased]")
    );
    assert!(state.banned && state.erased);
    catch_up_all(&db.worker).await;
    let check = |tables: Vec<Vec<String>>| {
        let text = tables.concat().join("\n");
        for secret in [
            "Old Timer",
            "old.timer@",
            "198.51.100.23",
            "OldBrowser",
            "NewBrowser",
            "192.0.2.99",
        ] {
            assert!(!text.contains(secret), "{secret} in {PERSONAL_TABLES:?}");
        }
        assert!(text.contains("oldie"), "the handle stays");
    };
    let live = contents(&db.worker).await;
    check(live.clone());
    let reasons: Vec<Option<String>> =
        sqlx::query_scalar("SELECT revoke_reason FROM sessions ORDER BY created_at")
            .fetch_all(&db.worker)
            .await
            .unwrap();
    let expected = serde_json::to_value(RevokeReason::UserErased).unwrap();
    assert!(
        reasons.iter().all(|r| r.as_deref() == expected.as_str()),
        "{reasons:?}"
    );
    rebuild_all(&db.worker).await;
    assert_eq!(contents(&db.worker).await, live);
    let report = verify_chains(&db.owner, None).await.unwrap();
    assert!(report.is_intact(), "{:?}", report.breaks);
}

#[tokio::test]
async fn an_unknown_future_version_fails_loudly_instead_of_decoding_wrongly() {
    let db = TestDb::new().await;
    let (tenant, user) = (Uuid::now_v7(), Uuid::now_v7());
    insert_as_old_binary(&db.owner, tenant, "user", &user.to_string(), &[
        ("UserRegistered", "9", json!({"UserRegistered": {"email": "x@example.com", "handle": "xx", "name": "X", "role": "user"}})),
    ])
    .await;
    let users = ChronicleStore::<User>::new(EventLog::new(db.app.clone()), TenantId(tenant), 10);
    let err = users
        .load_aggregate(&user.to_string())
        .await
        .err()
        .expect("v9 is refused");
    assert!(err.to_string().contains("no upcaster"), "{err}");
}

#[tokio::test]
async fn data_keys_are_readable_only_by_the_service_roles() {
    let db = TestDb::new().await;
    let privileges: Vec<(String, bool, bool, bool)> = sqlx::query_as(
        "SELECT r, has_table_privilege(r, 'personal_data_keys', 'SELECT'),
                has_table_privilege(r, 'personal_data_keys', 'UPDATE'),
                has_table_privilege(r, 'personal_data_keys', 'DELETE')
           FROM unnest(ARRAY['chronicle_app', 'chronicle_worker']) AS r ORDER BY r",
    )
    .fetch_all(&db.owner)
    .await
    .unwrap();
    assert_eq!(
        privileges,
        [
            ("chronicle_app".to_string(), true, true, false),
            ("chronicle_worker".to_string(), true, false, false),
        ]
    );
    // Nothing for PUBLIC (so nothing for a read-only analyst role created later), and
    // no other role holds a grant on the table.
    let grantees: Vec<String> = sqlx::query_scalar(
        "SELECT coalesce(g.rolname, 'PUBLIC') FROM pg_class c, aclexplode(c.relacl) a
           LEFT JOIN pg_roles g ON g.oid = a.grantee
          WHERE c.relname = 'personal_data_keys' AND a.grantee <> c.relowner
          GROUP BY 1 ORDER BY 1",
    )
    .fetch_all(&db.owner)
    .await
    .unwrap();
    assert_eq!(grantees, ["chronicle_app", "chronicle_worker"]);
    let denied = sqlx::query("UPDATE personal_data_keys SET data_key = NULL")
        .execute(&db.worker)
        .await
        .unwrap_err();
    assert!(denied.to_string().contains("permission denied"), "{denied}");
}

#[tokio::test]
async fn racing_key_creation_yields_one_key_and_an_erased_user_never_gets_a_new_one() {
    use chronicle::privacy::keys::destroy;
    use chronicle::privacy::{KeyError, KeyRing, KeyState};
    let db = TestDb::new().await;
    let (tenant, user) = (Uuid::now_v7(), Uuid::now_v7());
    let racers = (0..8).map(|_| {
        let pool = db.app.clone();
        tokio::spawn(async move {
            let mut conn = pool.acquire().await.unwrap();
            let ring = KeyRing::for_writing(&mut conn, tenant, &[user])
                .await
                .unwrap();
            match ring.get(tenant, user) {
                Some(KeyState::Active(key)) => *key.as_bytes(),
                other => panic!("{other:?}"),
            }
        })
    });
    let keys: std::collections::HashSet<[u8; 32]> = futures::future::join_all(racers)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(keys.len(), 1, "every writer seals with the same key");

    let mut conn = db.app.acquire().await.unwrap();
    destroy(&mut conn, tenant, user).await.unwrap();
    destroy(&mut conn, tenant, user).await.unwrap(); // idempotent
    let refused = KeyRing::for_writing(&mut conn, tenant, &[user]).await;
    assert!(matches!(refused, Err(KeyError::Erased(u)) if u == user));
    let rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM personal_data_keys WHERE data_key IS NOT NULL")
            .fetch_one(&db.owner)
            .await
            .unwrap();
    assert_eq!(rows, 0, "no fresh key was created for the erased user");
    // The same user id in another tenant is another key.
    let other = KeyRing::for_writing(&mut conn, Uuid::now_v7(), &[user]).await;
    assert!(other.is_ok());
}
