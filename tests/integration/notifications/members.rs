//! Migration 0050 fills `notification_members` from a log written before it, so the
//! admins of existing tenants are told of a disabled webhook without a rebuild; and a
//! rebuild from the same log agrees with it.

use chronicle::projections::{self, rebuild::rebuild, runtime};
use serde_json::json;
use uuid::Uuid;

use crate::common::{TestDb, table_contents};

/// Appends one user event the way the event store stores it (the seed only reads
/// `tenant_id`, `aggregate_*`, `sequence`, `event_type` and `payload`).
async fn user_event(
    pool: &sqlx::PgPool,
    tenant: Uuid,
    user: Uuid,
    seq: i64,
    payload: serde_json::Value,
) {
    let event_type = match &payload {
        serde_json::Value::String(s) => s.clone(),
        v => v.as_object().unwrap().keys().next().unwrap().clone(),
    };
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                             payload, metadata, tenant_id)
         VALUES ('user', $1, $2, $3, '1', $4, '{}', $5)",
    )
    .bind(user.to_string())
    .bind(seq)
    .bind(event_type)
    .bind(payload)
    .bind(tenant)
    .execute(pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn migration_0050_learns_the_members_of_an_existing_log() {
    // A database migrated up to 0049 only, with a log of users.
    let (name, owner) = TestDb::before_migration("0050").await;
    let tenant = Uuid::now_v7();
    let [ada, bob, cy, dan] = [(); 4].map(|_| Uuid::now_v7());
    let registered = |role: &str| json!({"UserRegistered": {"handle": "h", "name": "n", "email": "e", "role": role}});
    user_event(&owner, tenant, ada, 1, registered("admin")).await;
    user_event(&owner, tenant, bob, 1, registered("user")).await;
    user_event(
        &owner,
        tenant,
        bob,
        2,
        json!({"RoleChanged": {"role": "admin"}}),
    )
    .await;
    user_event(&owner, tenant, cy, 1, registered("admin")).await;
    user_event(&owner, tenant, cy, 2, json!("UserBanned")).await;
    user_event(&owner, tenant, dan, 1, registered("admin")).await;
    user_event(
        &owner,
        tenant,
        dan,
        2,
        json!({"UserErased": {"plaintext_events": 0}}),
    )
    .await;
    owner.close().await;

    // The rest of the migrations (what a deployment's next start runs).
    let db = TestDb::on(&name).await;
    let seeded: Vec<(Uuid, String, bool)> =
        sqlx::query_as("SELECT user_id, role, banned FROM notification_members ORDER BY user_id")
            .fetch_all(&db.worker)
            .await
            .unwrap();
    assert_eq!(
        seeded,
        vec![
            (ada, "admin".to_string(), false),
            (bob, "admin".to_string(), false),
            (cy, "admin".to_string(), true),
        ],
        "dan is erased"
    );

    // The projector, rebuilt from the same log, agrees with the seed.
    let projector = projections::by_name("notifications").unwrap();
    runtime::register(&db.worker, std::slice::from_ref(&projector))
        .await
        .unwrap();
    let before = table_contents(&db.worker, "notification_members").await;
    rebuild(&db.worker, projector).await.unwrap();
    assert_eq!(
        table_contents(&db.worker, "notification_members").await,
        before
    );
}
