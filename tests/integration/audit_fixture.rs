//! What the audit tests share: the example keys (the ones docs/audit.md shows, never
//! for real use), a signed event log, streams of file events, tampering as a superuser
//! with triggers off, and the `chronicle audit …` binary with the same keys.

use std::collections::BTreeMap;
use std::process::Command;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chronicle::aggregates::{File, FileCommand};
use chronicle::commands;
use chronicle::config::{CheckpointKey, EventSigningKey};
use chronicle::ids::{TenantId, UserId};
use chronicle::store::checkpointer::{CheckpointTaken, Checkpointer, take_all};
use chronicle::store::trust::Trust;
use chronicle::store::verify::{ChainBreak, VerifyReport, verify_log};
use chronicle::store::{Actor, ChronicleStore, EventLog, EventMetadata};

use crate::common::TestDb;

/// The checkpoint key's seed (docs/audit.md's example key).
pub const SEED: [u8; 32] = [7; 32];
/// The event signing key's seed and id.
pub const EVENT_SEED: [u8; 32] = [5; 32];
pub const EVENT_KEY_ID: &str = "k1";

pub fn key() -> CheckpointKey {
    CheckpointKey::from_seed(SEED)
}

pub fn event_key() -> EventSigningKey {
    EventSigningKey::new(EVENT_KEY_ID, EVENT_SEED)
}

/// `EVENT_SIGNING_KEY` for the example event key.
pub fn event_key_env() -> String {
    format!("{EVENT_KEY_ID}:{}", STANDARD.encode(EVENT_SEED))
}

/// Trust in the example keys, as configured.
pub fn trust() -> Trust {
    Trust {
        event_keys: Some(BTreeMap::from([(
            EVENT_KEY_ID.to_string(),
            event_key().verifying(),
        )])),
        checkpoint_keys: Some(vec![key().verifying()]),
        pinned_digests: Vec::new(),
    }
}

pub fn checkpointer() -> Checkpointer {
    Checkpointer {
        key: key(),
        trust: trust(),
        adopt_unsigned: false,
    }
}

/// One checkpoint round with the example keys.
pub async fn checkpoint(db: &TestDb) -> Vec<CheckpointTaken> {
    take_all(&db.worker, &checkpointer()).await.unwrap().taken
}

pub async fn report(db: &TestDb, tenant: Option<TenantId>) -> VerifyReport {
    verify_log(&db.worker, tenant, &trust()).await.unwrap()
}

pub async fn breaks(db: &TestDb, tenant: TenantId) -> Vec<ChainBreak> {
    report(db, Some(tenant)).await.breaks
}

/// The application's log: every commit signed with the example event key.
pub fn signed_log(db: &TestDb) -> EventLog {
    EventLog::new(db.app.clone()).signed_by(event_key())
}

/// A file stream of `1 + tags` events; returns its id.
pub async fn stream_of(db: &TestDb, tenant: TenantId, tags: usize) -> String {
    let id = uuid::Uuid::now_v7().to_string();
    let create = FileCommand::Create {
        owner_id: UserId::new(),
        display_name: "a".into(),
    };
    run(db, tenant, &id, create).await;
    for i in 0..tags {
        let tag = format!("t{i}");
        run(db, tenant, &id, FileCommand::Tag { tag }).await;
    }
    id
}

pub async fn run(db: &TestDb, tenant: TenantId, id: &str, command: FileCommand) {
    let store = ChronicleStore::<File>::new(signed_log(db), tenant, 3);
    let m = EventMetadata::system(tenant, Actor::System("test"));
    commands::execute(&store, id, command, &m, &())
        .await
        .unwrap();
}

/// Runs `sql` (binding `id`) with triggers off, as an attacker with superuser would.
pub async fn tamper(db: &TestDb, sql: &str, id: &str) {
    let mut tx = db.owner.begin().await.unwrap();
    sqlx::query("SET LOCAL session_replication_role = replica")
        .execute(&mut *tx)
        .await
        .unwrap();
    let done = sqlx::query(sql).bind(id).execute(&mut *tx).await.unwrap();
    assert!(done.rows_affected() > 0, "tampering changed nothing: {sql}");
    tx.commit().await.unwrap();
}

/// `chronicle …` as a separate process with the example keys configured; returns
/// (exit code, stdout and stderr).
pub fn chronicle(db: &TestDb, args: &[&str]) -> (i32, String) {
    let (code, stdout, stderr) = chronicle_output(db, args);
    (code, format!("{stdout}\n{stderr}"))
}

/// `chronicle …` as above; (exit code, stdout, stderr).
pub fn chronicle_output(db: &TestDb, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_chronicle"))
        .args(args)
        .env("DATABASE_URL", &db.url)
        .envs(crate::common::pooler_env(&db.url))
        .env("CHECKPOINT_SIGNING_KEY", STANDARD.encode(SEED))
        .env("EVENT_SIGNING_KEY", event_key_env())
        .env("RUST_LOG", "warn")
        .output()
        .expect("the chronicle binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
