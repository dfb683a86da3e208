//! The files read model: File commands through `commands::execute`, then the four read
//! tables as the files projector leaves them — version statuses, tags and their counts,
//! soft delete, tenant isolation, and rebuilds that reproduce every row.

use std::sync::Arc;

use chronicle::aggregates::file::{Access, FinalBlob, Grantee, NewVersion, Original};
use chronicle::aggregates::{File, FileCommand, Role};
use chronicle::commands;
use chronicle::ids::{FileId, TenantId, UserId};
use chronicle::projections::{self, Projector, rebuild::rebuild, runtime};
use chronicle::store::{Actor, ChronicleStore, EventLog, EventMetadata};
use sqlx::Row;

use crate::common::{TestDb, eventually, table_contents};

struct Files {
    db: Arc<TestDb>,
    store: ChronicleStore<File>,
    meta: EventMetadata,
    projector: std::sync::Arc<dyn Projector>,
}

impl Files {
    async fn new() -> Self {
        Self::in_tenant(Arc::new(TestDb::new().await), TenantId::new()).await
    }

    /// Files of `tenant` in a database that other tenants' `Files` may share.
    async fn in_tenant(db: Arc<TestDb>, tenant: TenantId) -> Self {
        let projector = projections::by_name("files").expect("files is registered");
        runtime::register(&db.worker, std::slice::from_ref(&projector))
            .await
            .unwrap();
        let store = ChronicleStore::<File>::new(EventLog::new(db.app.clone()), tenant, 5);
        let meta = EventMetadata::new(tenant, Actor::User(UserId::new()), "req");
        Files {
            db,
            store,
            meta,
            projector,
        }
    }

    async fn run(&self, file: FileId, command: FileCommand) {
        commands::execute(&self.store, &file.to_string(), command, &self.meta, &())
            .await
            .unwrap();
    }

    async fn create(&self, name: &str) -> FileId {
        let id = FileId::new();
        self.run(
            id,
            FileCommand::Create {
                owner_id: UserId::new(),
                display_name: name.into(),
            },
        )
        .await;
        id
    }

    async fn catch_up(&self) {
        runtime::catch_up(&self.db.worker, self.projector.as_ref())
            .await
            .unwrap();
    }

    async fn version(&self, file: FileId, n: i32) -> sqlx::postgres::PgRow {
        sqlx::query(
            "SELECT status::text AS status, sha256, size_bytes, storage_key, temp_location, mime_type,
                    duplicate_of_file, duplicate_of_version, last_error, attempts
               FROM file_versions WHERE file_id = $1 AND version_number = $2",
        )
        .bind(file.0)
        .bind(n)
        .fetch_one(&self.db.worker)
        .await
        .unwrap()
    }

    async fn status(&self, file: FileId, n: i32) -> String {
        self.version(file, n).await.get("status")
    }

    async fn tags(&self) -> Vec<(String, i32)> {
        sqlx::query_as("SELECT name, file_count FROM tags ORDER BY name")
            .fetch_all(&self.db.worker)
            .await
            .unwrap()
    }
}

fn upload(bytes: &str) -> FileCommand {
    FileCommand::Upload(NewVersion {
        filename: "report.pdf".into(),
        declared_mime: "application/octet-stream".into(),
        size_bytes: bytes.len() as u64,
        temp_location: format!("tmp/{bytes}"),
        sha256: sha(bytes),
    })
}

fn sha(bytes: &str) -> String {
    format!("{:0>64}", bytes)
}

fn start(n: u32, attempt: u32) -> FileCommand {
    FileCommand::StartProcessing {
        version_number: n,
        attempt,
    }
}

fn complete(n: u32, bytes: &str) -> FileCommand {
    FileCommand::Complete {
        version_number: n,
        result: FinalBlob {
            storage_key: format!("blobs/{}", sha(bytes)),
            size_bytes: bytes.len() as u64,
            sha256: sha(bytes),
            detected_mime: "application/pdf".into(),
        },
    }
}

#[tokio::test]
async fn a_version_walks_uploaded_processing_completed() {
    let f = Files::new().await;
    let file = f.create("report").await;
    f.run(file, upload("abc")).await;
    f.catch_up().await;
    let v = f.version(file, 1).await;
    assert_eq!(v.get::<String, _>("status"), "uploaded");
    assert_eq!(
        v.get::<Option<String>, _>("temp_location").as_deref(),
        Some("tmp/abc")
    );
    let row = sqlx::query("SELECT current_version, size_bytes FROM files WHERE id = $1")
        .bind(file.0)
        .fetch_one(&f.db.worker)
        .await
        .unwrap();
    assert_eq!(row.get::<Option<i32>, _>("current_version"), None);

    f.run(file, start(1, 1)).await;
    f.catch_up().await;
    assert_eq!(f.status(file, 1).await, "processing");

    f.run(
        file,
        FileCommand::RecordHash {
            version_number: 1,
            sha256: sha("abc"),
        },
    )
    .await;
    f.run(file, complete(1, "abc")).await;
    // The job delivered again: accepted, and nothing changes.
    f.run(file, complete(1, "abc")).await;
    f.catch_up().await;
    let v = f.version(file, 1).await;
    assert_eq!(v.get::<String, _>("status"), "completed");
    assert_eq!(v.get::<String, _>("sha256"), sha("abc"));
    assert_eq!(v.get::<i64, _>("size_bytes"), 3);
    assert_eq!(v.get::<String, _>("mime_type"), "application/pdf");
    assert_eq!(
        v.get::<Option<String>, _>("storage_key"),
        Some(format!("blobs/{}", sha("abc")))
    );
    assert_eq!(v.get::<Option<String>, _>("temp_location"), None);
    let row = sqlx::query("SELECT current_version, size_bytes FROM files WHERE id = $1")
        .bind(file.0)
        .fetch_one(&f.db.worker)
        .await
        .unwrap();
    assert_eq!(row.get::<Option<i32>, _>("current_version"), Some(1));
    assert_eq!(row.get::<Option<i64>, _>("size_bytes"), Some(3));
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_id = $1")
        .bind(file.to_string())
        .fetch_one(&f.db.owner)
        .await
        .unwrap();
    assert_eq!(
        events, 5,
        "created, uploaded, started, hashed, completed once"
    );
}

#[tokio::test]
async fn an_infected_version_is_virus_failed_and_cannot_complete() {
    let f = Files::new().await;
    let file = f.create("eicar.com").await;
    f.run(file, upload("x5o")).await;
    f.run(file, start(1, 1)).await;
    f.run(
        file,
        FileCommand::FailVirusScan {
            version_number: 1,
            signature: "Eicar-Test-Signature".into(),
        },
    )
    .await;
    let refused = commands::execute(
        &f.store,
        &file.to_string(),
        complete(1, "x5o"),
        &f.meta,
        &(),
    )
    .await;
    assert!(refused.is_err(), "a virus_failed version never completes");
    f.catch_up().await;
    let v = f.version(file, 1).await;
    assert_eq!(v.get::<String, _>("status"), "virus_failed");
    assert_eq!(v.get::<Option<String>, _>("storage_key"), None);
    assert_eq!(v.get::<Option<String>, _>("temp_location"), None);
    assert_eq!(
        v.get::<Option<String>, _>("last_error").as_deref(),
        Some("virus found: Eicar-Test-Signature")
    );
}

#[tokio::test]
async fn the_same_bytes_again_are_a_duplicate_and_other_files_record_their_original() {
    let f = Files::new().await;
    let file = f.create("a").await;
    f.run(file, upload("abc")).await;
    f.run(file, start(1, 1)).await;
    f.run(file, complete(1, "abc")).await;
    // Same file, same bytes.
    f.run(file, upload("abc")).await;
    f.run(file, start(2, 1)).await;
    f.run(
        file,
        FileCommand::RecordDuplicate {
            version_number: 2,
            original: Original::ThisFile { version_number: 1 },
        },
    )
    .await;
    // Another file, same bytes: shares the blob and completes.
    let other = f.create("b").await;
    f.run(other, upload("abc")).await;
    f.run(other, start(1, 1)).await;
    f.run(
        other,
        FileCommand::RecordDuplicate {
            version_number: 1,
            original: Original::OtherFile {
                file_id: file,
                version_number: 1,
            },
        },
    )
    .await;
    f.run(other, complete(1, "abc")).await;
    f.catch_up().await;

    let dup = f.version(file, 2).await;
    assert_eq!(dup.get::<String, _>("status"), "duplicate");
    assert_eq!(
        dup.get::<Option<uuid::Uuid>, _>("duplicate_of_file"),
        Some(file.0)
    );
    assert_eq!(dup.get::<Option<i32>, _>("duplicate_of_version"), Some(1));
    let current: Option<i32> =
        sqlx::query_scalar("SELECT current_version FROM files WHERE id = $1")
            .bind(file.0)
            .fetch_one(&f.db.worker)
            .await
            .unwrap();
    assert_eq!(current, Some(1), "a duplicate never becomes current");

    let shared = f.version(other, 1).await;
    assert_eq!(shared.get::<String, _>("status"), "completed");
    assert_eq!(
        shared.get::<Option<uuid::Uuid>, _>("duplicate_of_file"),
        Some(file.0)
    );
    // The dedup lookup the worker will use finds both completed versions of these bytes.
    let hits: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM file_versions WHERE tenant_id = $1 AND sha256 = $2 AND status = 'completed'",
    )
    .bind(f.store.tenant().0)
    .bind(sha("abc"))
    .fetch_one(&f.db.worker)
    .await
    .unwrap();
    assert_eq!(hits, 2);
}

#[tokio::test]
async fn failures_queue_retries_until_the_last_one_fails_the_version() {
    let f = Files::new().await;
    let file = f.create("a").await;
    f.run(file, upload("abc")).await;
    let fail = |attempt| FileCommand::FailProcessing {
        version_number: 1,
        attempt,
        max_attempts: 2,
        reason: format!("scanner unreachable ({attempt})"),
    };
    f.run(file, start(1, 1)).await;
    f.run(file, fail(1)).await;
    f.catch_up().await;
    assert_eq!(f.status(file, 1).await, "queued");
    f.run(file, start(1, 2)).await;
    f.run(file, fail(2)).await;
    f.catch_up().await;
    let v = f.version(file, 1).await;
    assert_eq!(v.get::<String, _>("status"), "failed");
    assert_eq!(v.get::<i32, _>("attempts"), 2);
    assert_eq!(
        v.get::<Option<String>, _>("last_error").as_deref(),
        Some("scanner unreachable (2)")
    );
}

#[tokio::test]
async fn rename_tags_delete_and_restore_are_reflected_with_tag_counts() {
    let f = Files::new().await;
    let a = f.create("a").await;
    let b = f.create("b").await;
    for (file, tag) in [(a, "work"), (a, "2024"), (b, "work")] {
        f.run(file, FileCommand::Tag { tag: tag.into() }).await;
    }
    f.run(
        a,
        FileCommand::Rename {
            display_name: "Annual report".into(),
        },
    )
    .await;
    f.catch_up().await;
    assert_eq!(f.tags().await, vec![("2024".into(), 1), ("work".into(), 2)]);
    let name: String = sqlx::query_scalar("SELECT display_name FROM files WHERE id = $1")
        .bind(a.0)
        .fetch_one(&f.db.worker)
        .await
        .unwrap();
    assert_eq!(name, "Annual report");

    f.run(b, FileCommand::Untag { tag: "work".into() }).await;
    f.run(a, FileCommand::Delete).await;
    f.catch_up().await;
    assert_eq!(f.tags().await, vec![], "deleted files are not counted");
    let (deleted, deleted_at): (bool, Option<chrono::DateTime<chrono::Utc>>) =
        sqlx::query_as("SELECT is_deleted, deleted_at FROM files WHERE id = $1")
            .bind(a.0)
            .fetch_one(&f.db.worker)
            .await
            .unwrap();
    assert!(deleted && deleted_at.is_some());
    let a_tags: Vec<String> =
        sqlx::query_scalar("SELECT tag FROM file_tags WHERE file_id = $1 ORDER BY tag")
            .bind(a.0)
            .fetch_all(&f.db.worker)
            .await
            .unwrap();
    assert_eq!(
        a_tags,
        vec!["2024", "work"],
        "a deleted file keeps its tags"
    );

    f.run(a, FileCommand::Restore).await;
    f.catch_up().await;
    assert_eq!(f.tags().await, vec![("2024".into(), 1), ("work".into(), 1)]);

    f.run(a, FileCommand::Purge).await;
    f.catch_up().await;
    assert_eq!(f.tags().await, vec![]);
    let purged: bool = sqlx::query_scalar("SELECT purged FROM files WHERE id = $1")
        .bind(a.0)
        .fetch_one(&f.db.worker)
        .await
        .unwrap();
    assert!(purged);
}

#[tokio::test]
async fn restoring_a_version_adds_a_completed_version_on_the_old_blob() {
    let f = Files::new().await;
    let file = f.create("a").await;
    f.run(file, upload("one")).await;
    f.run(file, start(1, 1)).await;
    f.run(file, complete(1, "one")).await;
    f.run(file, upload("two!")).await;
    f.run(file, start(2, 1)).await;
    f.run(file, complete(2, "two!")).await;
    f.run(file, FileCommand::RestoreVersion { version_number: 1 })
        .await;
    f.catch_up().await;
    let v = f.version(file, 3).await;
    assert_eq!(v.get::<String, _>("status"), "completed");
    assert_eq!(
        v.get::<Option<String>, _>("storage_key"),
        Some(format!("blobs/{}", sha("one")))
    );
    let (current, size): (Option<i32>, Option<i64>) =
        sqlx::query_as("SELECT current_version, size_bytes FROM files WHERE id = $1")
            .bind(file.0)
            .fetch_one(&f.db.worker)
            .await
            .unwrap();
    assert_eq!((current, size), (Some(3), Some(3)));
}

async fn visible_files(db: &TestDb, tenant: TenantId, table: &str) -> Vec<uuid::Uuid> {
    let mut tx = db.app.begin().await.unwrap();
    sqlx::query("SELECT set_config('app.tenant_id', $1, true)")
        .bind(tenant.to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query_scalar(&format!("SELECT tenant_id FROM {table}"))
        .fetch_all(&mut *tx)
        .await
        .unwrap()
}

#[tokio::test]
async fn each_tenant_sees_only_its_own_files_versions_and_tags() {
    let db = Arc::new(TestDb::new().await);
    let (a, b) = (TenantId::new(), TenantId::new());
    let fa = Files::in_tenant(db.clone(), a).await;
    let fb = Files::in_tenant(db, b).await;
    for f in [&fa, &fb] {
        let file = f.create("same name").await;
        f.run(file, upload("same bytes")).await;
        f.run(
            file,
            FileCommand::Tag {
                tag: "shared".into(),
            },
        )
        .await;
    }
    fa.catch_up().await;
    for table in ["files", "file_versions", "tags", "file_tags"] {
        let seen = visible_files(&fa.db, a, table).await;
        assert_eq!(seen, vec![a.0], "{table}: exactly tenant a's row");
        let seen = visible_files(&fa.db, b, table).await;
        assert_eq!(seen, vec![b.0], "{table}: exactly tenant b's row");
        let none: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&fa.db.app)
            .await
            .unwrap();
        assert_eq!(none, 0, "{table} visible without a tenant");
    }
}

#[tokio::test]
async fn a_rebuild_reproduces_all_four_tables_exactly() {
    let f = Files::new().await;
    for i in 0..6u32 {
        let file = f.create(&format!("file {i}")).await;
        f.run(file, FileCommand::Tag { tag: "all".into() }).await;
        f.run(
            file,
            FileCommand::Tag {
                tag: format!("t{}", i % 2),
            },
        )
        .await;
        f.run(file, upload(&format!("v{i}"))).await;
        f.run(file, start(1, 1)).await;
        if i % 3 == 0 {
            f.run(
                file,
                FileCommand::FailVirusScan {
                    version_number: 1,
                    signature: "Eicar".into(),
                },
            )
            .await;
        } else {
            f.run(file, complete(1, &format!("v{i}"))).await;
        }
        if i % 2 == 0 {
            f.run(file, FileCommand::Delete).await;
        }
        if i == 4 {
            f.run(file, FileCommand::Restore).await;
            f.run(file, FileCommand::Untag { tag: "t0".into() }).await;
        }
        // Grants: to a user (one later revoked) and to a role.
        if i % 3 == 1 {
            let grantee = Grantee::User(UserId(uuid::Uuid::from_u128(u128::from(i) + 1)));
            let share = FileCommand::Share {
                grantee,
                access: Access::Viewer,
            };
            f.run(file, share).await;
            let role = FileCommand::Share {
                grantee: Grantee::Role(Role::Auditor),
                access: Access::Editor,
            };
            f.run(file, role).await;
            if i == 4 {
                f.run(file, FileCommand::Unshare { grantee }).await;
            }
        }
    }
    f.catch_up().await;
    let tables = f.projector.tables();
    let mut live = Vec::new();
    for t in tables {
        let rows = table_contents(&f.db.worker, t).await;
        assert!(!rows.is_empty(), "{t} has rows to compare");
        live.push(rows);
    }
    // Damage every table; the rebuild must repair them from the log alone.
    for sql in [
        "UPDATE files SET display_name = 'x', updated_at = now()",
        "UPDATE file_versions SET status = 'failed'",
        "UPDATE tags SET file_count = 99",
        "DELETE FROM file_tags WHERE tag = 'all'",
        "DELETE FROM file_grants WHERE access = 'viewer'",
    ] {
        sqlx::query(sql).execute(&f.db.worker).await.unwrap();
    }
    rebuild(&f.db.worker, f.projector.clone()).await.unwrap();
    for (t, before) in tables.iter().zip(live) {
        assert_eq!(table_contents(&f.db.worker, t).await, before, "{t} rebuilt");
    }
    assert_eq!(
        f.tags().await,
        vec![("all".into(), 4), ("t1".into(), 3)],
        "deleted files 0 and 2 are not counted; 4 was restored without t0"
    );
}

/// Every kind of file event, several files interleaved: the events the files projector
/// folds (created … completed, failures, retries, duplicates) between the ones it
/// writes one by one (tags, delete, restore, restore version, prune, purge, shares).
async fn write_every_kind_of_file_event(f: &Files) {
    let same = f.create("same bytes").await;
    let other = f.create("other").await;
    for file in [same, other] {
        f.run(file, FileCommand::Tag { tag: "t".into() }).await;
        f.run(file, upload("abc")).await;
    }
    f.run(same, start(1, 1)).await;
    f.run(
        same,
        FileCommand::RecordHash {
            version_number: 1,
            sha256: sha("abc"),
        },
    )
    .await;
    f.run(same, complete(1, "abc")).await;
    // Two versions in flight; the newer completes first.
    f.run(same, upload("abc")).await;
    f.run(same, upload("newer")).await;
    f.run(same, start(3, 1)).await;
    f.run(same, complete(3, "newer")).await;
    f.run(same, start(2, 1)).await;
    let this_file = Original::ThisFile { version_number: 1 };
    f.run(
        same,
        FileCommand::RecordDuplicate {
            version_number: 2,
            original: this_file,
        },
    )
    .await;
    f.run(other, start(1, 1)).await;
    let other_file = Original::OtherFile {
        file_id: same,
        version_number: 1,
    };
    f.run(
        other,
        FileCommand::RecordDuplicate {
            version_number: 1,
            original: other_file,
        },
    )
    .await;
    f.run(other, complete(1, "abc")).await;
    f.run(same, FileCommand::RestoreVersion { version_number: 1 })
        .await;
    f.run(same, FileCommand::PruneVersions { keep: 2 }).await;
    // Failures, a dead letter and an operator's retry, then a virus.
    let failing = f.create("failing").await;
    f.run(failing, upload("bad")).await;
    for attempt in 1..=2 {
        f.run(failing, start(1, attempt)).await;
        let fail = FileCommand::FailProcessing {
            version_number: 1,
            attempt,
            max_attempts: 2,
            reason: format!("scanner unreachable ({attempt})"),
        };
        f.run(failing, fail).await;
    }
    f.run(failing, FileCommand::RetryProcessing { version_number: 1 })
        .await;
    f.run(failing, start(1, 1)).await;
    let virus = FileCommand::FailVirusScan {
        version_number: 1,
        signature: "Eicar".into(),
    };
    f.run(failing, virus).await;
    f.run(
        other,
        FileCommand::Rename {
            display_name: "renamed".into(),
        },
    )
    .await;
    let share = FileCommand::Share {
        grantee: Grantee::Role(Role::Auditor),
        access: Access::Viewer,
    };
    f.run(other, share).await;
    f.run(other, FileCommand::Delete).await;
    f.run(other, FileCommand::Restore).await;
    f.run(failing, FileCommand::Delete).await;
    f.run(failing, FileCommand::Purge).await;
}

#[tokio::test]
async fn the_rows_are_the_same_whatever_the_batch_boundaries() {
    // Both projectors that fold a batch's events into a few statements.
    let f = Files::new().await;
    write_every_kind_of_file_event(&f).await;
    // Every event of the log, once all are visible to projectors: an event is, only
    // once every older transaction in the cluster ended (other tests run beside this one).
    let written: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&f.db.owner)
        .await
        .unwrap();
    let mut events = Vec::new();
    eventually("every event is visible to projectors", async || {
        let mut conn = f.db.worker.acquire().await.unwrap();
        events = projections::next_batch(&mut conn, Default::default(), 10_000)
            .await
            .unwrap()
            .events;
        events.len() as i64 == written
    })
    .await;
    assert!(events.len() > 30, "{} events", events.len());
    for name in ["files", "blob_refs"] {
        let projector = projections::by_name(name).unwrap();
        runtime::register(&f.db.worker, std::slice::from_ref(&projector))
            .await
            .unwrap();
        runtime::catch_up(&f.db.worker, projector.as_ref())
            .await
            .unwrap();
        let tables = projector.tables();
        let mut whole = Vec::new();
        for t in tables {
            let rows = table_contents(&f.db.worker, t).await;
            assert!(!rows.is_empty(), "{t} has rows to compare");
            whole.push(rows);
        }
        for size in [1, 2, 3, 7] {
            for t in tables {
                sqlx::query(&format!("DELETE FROM {t}"))
                    .execute(&f.db.owner)
                    .await
                    .unwrap();
            }
            for batch in events.chunks(size) {
                let mut tx = f.db.worker.begin().await.unwrap();
                projector.apply(&mut tx, batch).await.unwrap();
                tx.commit().await.unwrap();
            }
            for (t, expected) in tables.iter().zip(&whole) {
                let rows = table_contents(&f.db.worker, t).await;
                assert_eq!(&rows, expected, "{t} in batches of {size}");
            }
            if name == "files" {
                assert_usage_is_the_sum(&f.db).await;
            }
        }
    }
    // What the scenario is for, in the rows all of them agree on.
    let statuses: Vec<(String, i32, String)> = sqlx::query_as(
        "SELECT f.display_name, v.version_number, v.status::text
           FROM file_versions v JOIN files f ON f.id = v.file_id ORDER BY 1, 2",
    )
    .fetch_all(&f.db.worker)
    .await
    .unwrap();
    let statuses: Vec<(&str, i32, &str)> = statuses
        .iter()
        .map(|(n, v, s)| (n.as_str(), *v, s.as_str()))
        .collect();
    assert_eq!(
        statuses,
        vec![
            ("failing", 1, "virus_failed"),
            ("renamed", 1, "completed"),
            ("same bytes", 3, "completed"),
            ("same bytes", 4, "completed"),
        ]
    );
    let references: Vec<(String, i32, bool)> = sqlx::query_as(
        "SELECT f.display_name, r.version_number, r.released_at IS NOT NULL
           FROM blob_references r JOIN files f ON f.id = r.file_id ORDER BY 1, 2",
    )
    .fetch_all(&f.db.worker)
    .await
    .unwrap();
    let released = |n: &str, v: i32, r: bool| (n.to_string(), v, r);
    assert_eq!(
        references,
        vec![
            released("failing", 1, true),
            released("renamed", 1, false),
            released("same bytes", 1, true),
            released("same bytes", 2, true),
            released("same bytes", 3, false),
            released("same bytes", 4, false),
        ],
        "pruned, duplicate and virus versions released; a retry's reference back, then gone"
    );
}

/// Each tenant's `tenant_usage` row (what the quota check reads) against the sum it
/// stands for: the sizes of the versions that are not virus_failed, duplicate or failed,
/// of files that exist and are not purged. Tenants without bytes may have a zero row.
async fn assert_usage_is_the_sum(db: &TestDb) -> Vec<(uuid::Uuid, i64)> {
    let sum: Vec<(uuid::Uuid, i64)> = sqlx::query_as(
        "SELECT v.tenant_id, sum(v.size_bytes)::bigint
           FROM file_versions v JOIN files f ON f.tenant_id = v.tenant_id AND f.id = v.file_id
          WHERE NOT f.purged AND v.status NOT IN ('virus_failed', 'duplicate', 'failed')
          GROUP BY 1 HAVING sum(v.size_bytes) <> 0 ORDER BY 1",
    )
    .fetch_all(&db.owner)
    .await
    .unwrap();
    let usage: Vec<(uuid::Uuid, i64)> = sqlx::query_as(
        "SELECT tenant_id, stored_bytes FROM tenant_usage WHERE stored_bytes <> 0 ORDER BY 1",
    )
    .fetch_all(&db.owner)
    .await
    .unwrap();
    assert_eq!(usage, sum, "tenant_usage is the sum of the stored versions");
    usage
}

/// What one tenant's `tenant_usage` row holds, as the API reads it: under row-level
/// security, as the app role.
async fn usage_seen_by(f: &Files) -> Option<i64> {
    let mut tx = f.db.as_tenant(f.store.tenant().0).await;
    let used = sqlx::query_scalar("SELECT stored_bytes FROM tenant_usage")
        .fetch_optional(&mut *tx)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    used
}

/// The quota reads one row per tenant instead of summing the tenant's versions; the row
/// must stay that sum through uploads, verdicts, duplicates, a virus, retention, a purge,
/// damage and a rebuild, each tenant apart.
#[tokio::test]
async fn tenant_usage_stays_the_sum_of_stored_versions_through_every_change() {
    let db = Arc::new(TestDb::new().await);
    let a = Files::in_tenant(db.clone(), TenantId::new()).await;
    let b = Files::in_tenant(db.clone(), TenantId::new()).await;
    write_every_kind_of_file_event(&a).await;
    let kept = b.create("kept").await;
    let gone = b.create("gone").await;
    for (file, bytes) in [(kept, "12345"), (gone, "abcdefgh")] {
        b.run(file, upload(bytes)).await;
        b.run(file, start(1, 1)).await;
        b.run(file, complete(1, bytes)).await;
    }
    b.run(gone, upload("xy")).await;
    a.catch_up().await;
    let usage = assert_usage_is_the_sum(&db).await;
    assert_eq!(usage.len(), 2, "both tenants store bytes: {usage:?}");
    assert_eq!(
        usage_seen_by(&b).await,
        Some(5 + 8 + 2),
        "completed and pending count"
    );
    let a_used = usage_seen_by(&a).await;
    assert!(a_used.is_some_and(|n| n > 0), "{a_used:?}");

    // A purge takes the file's versions out; the other tenant is untouched.
    b.run(gone, FileCommand::Delete).await;
    b.catch_up().await;
    assert_eq!(
        usage_seen_by(&b).await,
        Some(15),
        "a deleted file still stores its bytes"
    );
    b.run(gone, FileCommand::Purge).await;
    b.catch_up().await;
    assert_usage_is_the_sum(&db).await;
    assert_eq!(usage_seen_by(&b).await, Some(5));
    assert_eq!(usage_seen_by(&a).await, a_used);

    // Damage the row and the versions; a rebuild of the files projector restores both.
    sqlx::query("UPDATE tenant_usage SET stored_bytes = 1")
        .execute(&db.owner)
        .await
        .unwrap();
    sqlx::query("UPDATE file_versions SET status = 'failed'")
        .execute(&db.worker)
        .await
        .unwrap();
    rebuild(&db.worker, a.projector.clone()).await.unwrap();
    assert_usage_is_the_sum(&db).await;
    assert_eq!(usage_seen_by(&b).await, Some(5));
    assert_eq!(usage_seen_by(&a).await, a_used);
}
