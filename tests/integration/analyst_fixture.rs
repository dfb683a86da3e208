//! Fixtures for the analyst tests: database logins granted `analyst` / `analyst_all`,
//! and a small known dataset written as real events with chosen times and projected by
//! the real projectors, so every number the views show can be computed by hand.

use std::str::FromStr;

use chronicle::aggregates::file::{FinalBlob, NewVersion, Original};
use chronicle::aggregates::{FileEvent, TenantEvent};
use chronicle::ids::{FileId, UserId};
use chronicle::projections::{self, runtime};
use cqrs_es::DomainEvent;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, PgConnection};
use uuid::Uuid;

use crate::common::{TestDb, base_url};

/// A login role (cluster-wide, so uniquely named) that is a member of `group`; dropped
/// with the value, also when a test fails.
pub struct Login {
    pub name: String,
}

impl Login {
    pub async fn create(db: &TestDb, group: &str) -> Login {
        let name = format!("analyst_login_{}", Uuid::now_v7().simple());
        sqlx::query(&format!("CREATE ROLE {name} LOGIN"))
            .execute(&db.owner)
            .await
            .unwrap();
        sqlx::query(&format!("GRANT {group} TO {name}"))
            .execute(&db.owner)
            .await
            .unwrap();
        Login { name }
    }

    /// What docs/schema.md tells an operator to run for a login that may read only
    /// `tenant`: a pin it cannot change.
    pub async fn pin(&self, db: &TestDb, tenant: Uuid) {
        sqlx::query("INSERT INTO analyst_tenants (login, tenant_id) VALUES ($1, $2)")
            .bind(&self.name)
            .bind(tenant)
            .execute(&db.owner)
            .await
            .unwrap();
    }

    /// The login's default tenant (a setting it may override).
    pub async fn set_default_tenant(&self, db: &TestDb, tenant: Uuid) {
        sqlx::query(&format!(
            "ALTER ROLE {} IN DATABASE \"{}\" SET app.tenant_id = '{tenant}'",
            self.name, db.name
        ))
        .execute(&db.owner)
        .await
        .unwrap();
    }

    /// A new session as this login (role settings apply when a session starts).
    pub async fn connect(&self, db: &TestDb) -> PgConnection {
        PgConnectOptions::from_str(&db.url)
            .unwrap()
            .username(&self.name)
            .connect()
            .await
            .unwrap()
    }
}

impl Drop for Login {
    fn drop(&mut self) {
        let name = self.name.clone();
        let base = base_url();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                if let Ok(pool) = sqlx::PgPool::connect(&base).await {
                    let _ = sqlx::query(&format!("DROP ROLE IF EXISTS {name}"))
                        .execute(&pool)
                        .await;
                }
            })
        })
        .join();
    }
}

/// The two tenants and users of the known dataset.
pub struct Dataset {
    pub tenant_a: Uuid,
    pub tenant_b: Uuid,
    pub user_a1: Uuid,
    pub user_a2: Uuid,
    pub user_b: Uuid,
}

/// One stream being written: its next sequence number.
struct Stream<'a> {
    db: &'a TestDb,
    tenant: Uuid,
    aggregate_type: &'static str,
    id: Uuid,
    sequence: i64,
}

impl Stream<'_> {
    async fn append<E: DomainEvent>(&mut self, at: &str, event: E) {
        self.sequence += 1;
        let metadata = serde_json::json!({
            "tenant_id": self.tenant.to_string(),
            "actor": "system:test",
            "hash": format!("{}-{}", self.id, self.sequence),
        });
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                                 payload, metadata, tenant_id, recorded_at)
             VALUES ($1, $2, $3, $4, $5, $6::json, $7::json, $8, $9::timestamptz)",
        )
        .bind(self.aggregate_type)
        .bind(self.id.to_string())
        .bind(self.sequence)
        .bind(event.event_type())
        .bind(event.event_version())
        .bind(serde_json::to_string(&event).unwrap())
        .bind(metadata.to_string())
        .bind(self.tenant)
        .bind(at)
        .execute(&self.db.owner)
        .await
        .unwrap();
    }
}

fn stream<'a>(db: &'a TestDb, tenant: Uuid, aggregate_type: &'static str, id: Uuid) -> Stream<'a> {
    Stream {
        db,
        tenant,
        aggregate_type,
        id,
        sequence: 0,
    }
}

/// Appends one more event to an existing file stream of the dataset and projects it.
pub async fn append_to_file(
    db: &TestDb,
    tenant: Uuid,
    display_name: &str,
    at: &str,
    event: FileEvent,
) {
    let (id, sequence): (Uuid, i64) = sqlx::query_as(
        "SELECT f.id, (SELECT max(sequence) FROM events e WHERE e.tenant_id = f.tenant_id AND e.aggregate_id = f.id::text)
           FROM files f WHERE f.tenant_id = $1 AND f.display_name = $2",
    )
    .bind(tenant)
    .bind(display_name)
    .fetch_one(&db.worker)
    .await
    .unwrap();
    let mut s = stream(db, tenant, "file", id);
    s.sequence = sequence;
    s.append(at, event).await;
    project(db).await;
}

fn uploaded(version_number: u32, sha256: &str, size_bytes: u64) -> FileEvent {
    FileEvent::Uploaded {
        version_number,
        version: NewVersion {
            filename: format!("{sha256}.bin"),
            declared_mime: "application/octet-stream".into(),
            size_bytes,
            temp_location: format!("tmp/{}", Uuid::now_v7()),
            sha256: sha256.into(),
        },
    }
}

fn blob(tenant: Uuid, sha256: &str, size_bytes: u64) -> FinalBlob {
    FinalBlob {
        storage_key: format!("blobs/{tenant}/{sha256}"),
        size_bytes,
        sha256: sha256.into(),
        detected_mime: "application/octet-stream".into(),
    }
}

fn completed(tenant: Uuid, version_number: u32, sha256: &str, size_bytes: u64) -> FileEvent {
    FileEvent::VersionCompleted {
        version_number,
        result: blob(tenant, sha256, size_bytes),
    }
}

fn created(owner: Uuid, name: &str) -> FileEvent {
    FileEvent::FileCreated {
        owner_id: UserId(owner),
        display_name: name.into(),
    }
}

/// Writes the dataset docs/schema.md's numbers are checked against, then projects it.
///
/// Days D1 = 2026-03-01 and D2 = 2026-03-02 (UTC). Tenant A:
/// - a1 (user a1): v1 `aa` 1000 B uploaded D1 10:00:00, completed 2 s later; v2 restored
///   from v1 on D2 (a stored version, but never processed).
/// - a2 (user a2): v1 `aa` 1000 B (dedup across files) uploaded D1 23:59:58, completed
///   D2 00:00:02 — 4 s, counted on D2, the day it completed.
/// - a3 (user a1): v1 `bb` 500 B (6 s) and v2 `cc` 300 B (10 s) on D2; then deleted.
/// - a4 (user a1): v1 `dd` 68 B on D2, a virus.
/// - a5 (user a2): v1 `ee` 700 B on D2, dead letter after its last attempt.
/// - a6 (user a1): v1 `ff` 5000 B on D1 (3 s), then deleted and purged.
///
/// Tenant B: b1 (user b): v1 `aa` 1000 B on D1, 1 s — the same bytes as A's, which
/// dedup never shares across tenants.
pub async fn seed(db: &TestDb) -> Dataset {
    let d = Dataset {
        tenant_a: Uuid::now_v7(),
        tenant_b: Uuid::now_v7(),
        user_a1: Uuid::now_v7(),
        user_a2: Uuid::now_v7(),
        user_b: Uuid::now_v7(),
    };
    let (a, b) = (d.tenant_a, d.tenant_b);
    for (tenant, name, admin) in [(a, "A", d.user_a1), (b, "B", d.user_b)] {
        stream(db, tenant, "tenant", tenant)
            .append(
                "2026-02-01T00:00:00Z",
                TenantEvent::TenantCreated {
                    name: name.into(),
                    created_by: UserId(admin),
                },
            )
            .await;
    }

    let a1 = Uuid::now_v7();
    let mut s = stream(db, a, "file", a1);
    s.append("2026-03-01T09:00:00Z", created(d.user_a1, "a1"))
        .await;
    s.append("2026-03-01T10:00:00Z", uploaded(1, "aa", 1000))
        .await;
    s.append("2026-03-01T10:00:02Z", completed(a, 1, "aa", 1000))
        .await;
    let restored = FileEvent::VersionRestored {
        version_number: 2,
        from_version: 1,
        filename: "aa.bin".into(),
        blob: blob(a, "aa", 1000),
    };
    s.append("2026-03-02T08:00:00Z", restored).await;

    let a2 = Uuid::now_v7();
    let mut s = stream(db, a, "file", a2);
    s.append("2026-03-01T23:00:00Z", created(d.user_a2, "a2"))
        .await;
    s.append("2026-03-01T23:59:58Z", uploaded(1, "aa", 1000))
        .await;
    let duplicate = FileEvent::DuplicateDetected {
        version_number: 1,
        original: Original::OtherFile {
            file_id: FileId(a1),
            version_number: 1,
        },
    };
    s.append("2026-03-02T00:00:01Z", duplicate).await;
    s.append("2026-03-02T00:00:02Z", completed(a, 1, "aa", 1000))
        .await;

    let mut s = stream(db, a, "file", Uuid::now_v7());
    s.append("2026-03-02T09:00:00Z", created(d.user_a1, "a3"))
        .await;
    s.append("2026-03-02T09:00:00Z", uploaded(1, "bb", 500))
        .await;
    s.append("2026-03-02T09:00:06Z", completed(a, 1, "bb", 500))
        .await;
    s.append("2026-03-02T10:00:00Z", uploaded(2, "cc", 300))
        .await;
    s.append("2026-03-02T10:00:10Z", completed(a, 2, "cc", 300))
        .await;
    s.append("2026-03-02T11:00:00Z", FileEvent::Deleted).await;

    let mut s = stream(db, a, "file", Uuid::now_v7());
    s.append("2026-03-02T12:00:00Z", created(d.user_a1, "a4"))
        .await;
    s.append("2026-03-02T12:00:00Z", uploaded(1, "dd", 68))
        .await;
    let virus = FileEvent::VirusFailed {
        version_number: 1,
        signature: "Test.EICAR".into(),
    };
    s.append("2026-03-02T12:00:01Z", virus).await;

    let mut s = stream(db, a, "file", Uuid::now_v7());
    s.append("2026-03-02T13:00:00Z", created(d.user_a2, "a5"))
        .await;
    s.append("2026-03-02T13:00:00Z", uploaded(1, "ee", 700))
        .await;
    let dead = FileEvent::ProcessingFailed {
        version_number: 1,
        attempt: 3,
        reason: "scanner unavailable".into(),
        last_attempt: true,
        max_attempts: 3,
    };
    s.append("2026-03-02T13:05:00Z", dead).await;

    let mut s = stream(db, a, "file", Uuid::now_v7());
    s.append("2026-03-01T11:00:00Z", created(d.user_a1, "a6"))
        .await;
    s.append("2026-03-01T11:00:00Z", uploaded(1, "ff", 5000))
        .await;
    s.append("2026-03-01T11:00:03Z", completed(a, 1, "ff", 5000))
        .await;
    s.append("2026-03-01T12:00:00Z", FileEvent::Deleted).await;
    s.append("2026-03-01T12:00:01Z", FileEvent::Purged).await;

    let mut s = stream(db, b, "file", Uuid::now_v7());
    s.append("2026-03-01T15:00:00Z", created(d.user_b, "b1"))
        .await;
    s.append("2026-03-01T15:00:00Z", uploaded(1, "aa", 1000))
        .await;
    s.append("2026-03-01T15:00:01Z", completed(b, 1, "aa", 1000))
        .await;

    project(db).await;
    d
}

/// Runs every projector until it has caught up with the log.
pub async fn project(db: &TestDb) {
    let all = projections::all();
    runtime::register(&db.worker, &all).await.unwrap();
    for p in &all {
        runtime::catch_up(&db.worker, p.as_ref()).await.unwrap();
    }
}
