//! Notifications and live events. Fixtures here: accounts over HTTP, File commands
//! through `commands::execute` (the upload API is not there yet), waiting for the
//! projector. `listing`: kinds per owner, paging, unread, reading once, rebuild;
//! `read_all`: marking all read.
//! `live`: the SSE stream across instances, resume, gaps, shutdown. `members` and
//! `unread`: migrations that fill a table from an existing database.

mod listing;
mod live;
mod members;
mod pings;
mod read_all;
mod unread;

use std::time::Duration;

use chronicle::aggregates::file::{FinalBlob, NewVersion};
use chronicle::aggregates::{File, FileCommand};
use chronicle::app::Mode;
use chronicle::commands;
use chronicle::ids::{FileId, TenantId, UserId};
use chronicle::store::{Actor, ChronicleStore, EventLog, EventMetadata};
use sqlx::PgPool;

use crate::common::TestApp;

pub const SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// Overrides every notification test app uses (plus a shared prefix where two
/// instances must share channels).
pub fn overrides(prefix: &str) -> Vec<(&'static str, String)> {
    vec![
        ("JWT_SECRET", SECRET.to_string()),
        ("AUTH_RATE_LIMIT_PER_MINUTE", "1000".into()),
        ("RATE_LIMIT_PER_MINUTE", "100000".into()),
        ("REDIS_KEY_PREFIX", prefix.to_string()),
    ]
}

pub async fn app(mode: Mode, prefix: &str) -> TestApp {
    let o = overrides(prefix);
    let o: Vec<(&str, &str)> = o.iter().map(|(k, v)| (*k, v.as_str())).collect();
    TestApp::spawn(mode, &o).await
}

/// A registered, logged-in user (each registration creates its own tenant).
pub struct Account {
    pub tenant: TenantId,
    pub user: UserId,
    pub access: String,
}

pub async fn account(t: &TestApp, handle: &str) -> Account {
    let client = t.signup(handle).await;
    let id = |text: &str| uuid::Uuid::parse_str(text).unwrap();
    Account {
        tenant: TenantId(id(&client.tenant_id)),
        user: UserId(id(&client.user_id)),
        access: client.token,
    }
}

/// Drives File commands in one tenant, as the API and the worker will.
pub struct Files {
    store: ChronicleStore<File>,
    meta: EventMetadata,
}

impl Files {
    pub fn new(pool: &PgPool, tenant: TenantId) -> Self {
        Files {
            store: ChronicleStore::new(EventLog::new(pool.clone()), tenant, 5),
            meta: EventMetadata::system(tenant, Actor::System("worker")),
        }
    }

    pub async fn run(&self, file: FileId, command: FileCommand) {
        commands::execute(&self.store, &file.to_string(), command, &self.meta, &())
            .await
            .unwrap();
    }

    pub async fn create(&self, owner: UserId, name: &str) -> FileId {
        let id = FileId::new();
        let create = FileCommand::Create {
            owner_id: owner,
            display_name: name.into(),
        };
        self.run(id, create).await;
        id
    }

    /// Uploads `bytes` as the next version and starts processing it.
    pub async fn upload(&self, file: FileId, n: u32, bytes: &str) {
        self.run(
            file,
            FileCommand::Upload(NewVersion {
                filename: "report.pdf".into(),
                declared_mime: "application/pdf".into(),
                size_bytes: bytes.len() as u64,
                temp_location: format!("tmp/{bytes}"),
                sha256: sha(bytes),
            }),
        )
        .await;
        let start = FileCommand::StartProcessing {
            version_number: n,
            attempt: 1,
        };
        self.run(file, start).await;
    }

    pub async fn complete(&self, file: FileId, n: u32, bytes: &str) {
        let result = FinalBlob {
            storage_key: format!("blobs/{}", sha(bytes)),
            size_bytes: bytes.len() as u64,
            sha256: sha(bytes),
            detected_mime: "application/pdf".into(),
        };
        let command = FileCommand::Complete {
            version_number: n,
            result,
        };
        self.run(file, command).await;
    }

    /// A new file of `owner` with one completed version: 3 rows (uploaded, processing, completed), 1 notification.
    pub async fn completed_file(&self, owner: UserId, name: &str) -> FileId {
        let file = self.create(owner, name).await;
        self.upload(file, 1, "abc").await;
        self.complete(file, 1, "abc").await;
        file
    }
}

fn sha(bytes: &str) -> String {
    format!("{bytes:0>64}")
}

/// Rows of `user` in the notifications table (every kind), as the projector left them.
pub async fn rows_of(pool: &PgPool, user: UserId) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM notifications WHERE recipient_id = $1")
        .bind(user.0)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Waits until the running app's projector has written `n` rows for `user`.
pub async fn wait_for_rows(pool: &PgPool, user: UserId, n: i64) {
    crate::common::eventually_within(
        "the projector writes the rows",
        Duration::from_secs(10),
        async || (rows_of(pool, user).await >= n).then_some(()),
    )
    .await;
    assert_eq!(rows_of(pool, user).await, n, "more rows than expected");
}
