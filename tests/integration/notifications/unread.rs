//! Migration 0056 counts what is already unread: a deployment upgrading with notifications
//! in its tables gets each user's `unread_count` right from the first read, and the
//! triggers keep it from there.

use uuid::Uuid;

use super::listing::assert_unread_is_the_count;
use crate::common::TestDb;

/// One notification row as the projector writes it (a tenant-level kind names no file).
async fn notification(
    owner: &sqlx::PgPool,
    tenant: Uuid,
    recipient: Uuid,
    seq: i64,
    kind: &str,
    read: bool,
) {
    let file = kind != "webhook_disabled";
    sqlx::query(
        "INSERT INTO notifications (tenant_id, id, recipient_id, seq, transaction_id,
                                    global_position, kind, file_id, file_name, version_number,
                                    status, details, created_at, read_at)
         VALUES ($1, $2, $3, $4, '1'::xid8, $4, $5,
                 CASE WHEN $6 THEN $2 END, CASE WHEN $6 THEN 'a.txt' END,
                 CASE WHEN $6 THEN 1 END, CASE WHEN $6 THEN 'completed'::file_status END,
                 '{}', now(), CASE WHEN $7 THEN now() END)",
    )
    .bind(tenant)
    .bind(Uuid::now_v7())
    .bind(recipient)
    .bind(seq)
    .bind(kind)
    .bind(file)
    .bind(read)
    .execute(owner)
    .await
    .unwrap();
}

#[tokio::test]
async fn migration_0056_counts_what_is_already_unread() {
    let (name, owner) = TestDb::before_migration("0056").await;
    let (tenant, other_tenant) = (Uuid::now_v7(), Uuid::now_v7());
    let [ada, bob, cy, dan] = [(); 4].map(|_| Uuid::now_v7());
    // ada: three unread, one read, two status-only rows (never listed, never counted).
    for (seq, kind, read) in [
        (1, "version_completed", false),
        (2, "version_status", false),
        (3, "duplicate", false),
        (4, "version_completed", true),
        (5, "version_status", false),
        (6, "virus_found", false),
    ] {
        notification(&owner, tenant, ada, seq, kind, read).await;
    }
    notification(&owner, tenant, bob, 1, "file_shared", false).await;
    // cy has read everything: no counter, or a zero one.
    notification(&owner, tenant, cy, 1, "version_completed", true).await;
    notification(&owner, other_tenant, dan, 1, "webhook_disabled", false).await;
    owner.close().await;

    // The rest of the migrations, as the deployment's next start runs them.
    let db = TestDb::on(&name).await;
    let mut expected = vec![(tenant, ada, 3), (tenant, bob, 1), (other_tenant, dan, 1)];
    expected.sort();
    assert_eq!(assert_unread_is_the_count(&db).await, expected);

    // From here the triggers keep it: ada reads one, gets a new one.
    sqlx::query("UPDATE notifications SET read_at = now() WHERE recipient_id = $1 AND seq = 1")
        .bind(ada)
        .execute(&db.owner)
        .await
        .unwrap();
    notification(&db.owner, tenant, ada, 7, "processing_failed", false).await;
    notification(&db.owner, tenant, ada, 8, "version_status", false).await;
    let kept = assert_unread_is_the_count(&db).await;
    assert!(kept.contains(&(tenant, ada, 3)), "{kept:?}");

    // And a tenant's connection sees its own users' counters only.
    let mut tx = db.as_tenant(tenant).await;
    let mut seen: Vec<(Uuid, i64)> =
        sqlx::query_as("SELECT recipient_id, unread FROM notification_unread WHERE unread <> 0")
            .fetch_all(&mut *tx)
            .await
            .unwrap();
    tx.rollback().await.unwrap();
    seen.sort();
    let mut mine = vec![(ada, 3), (bob, 1)];
    mine.sort();
    assert_eq!(seen, mine);
}
