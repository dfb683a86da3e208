//! Deciding without a load (src/store/remembered.rs): a command decides on what its
//! process last committed to the stream, or on the empty stream, and only what the
//! database confirms stands. Two event logs on one database are two processes, each with
//! its own memory; every answer below is the one a freshly loaded stream gives.

use chronicle::aggregates::{File, FileCommand, FileError};
use chronicle::commands::{self, CommandError};
use chronicle::ids::{TenantId, UserId};
use chronicle::store::{Actor, ChronicleStore, EventLog, EventMetadata};

use crate::common::TestDb;

struct TwoProcesses {
    db: TestDb,
    a: ChronicleStore<File>,
    b: ChronicleStore<File>,
    meta: EventMetadata,
}

impl TwoProcesses {
    async fn new() -> Self {
        let db = TestDb::new().await;
        let tenant = TenantId::new();
        let a = ChronicleStore::new(EventLog::new(db.app.clone()), tenant, 100);
        let b = ChronicleStore::new(EventLog::new(db.app.clone()), tenant, 100);
        let meta = EventMetadata::system(tenant, Actor::System("test"));
        Self { db, a, b, meta }
    }

    async fn run(
        &self,
        store: &ChronicleStore<File>,
        id: &str,
        command: FileCommand,
    ) -> Result<commands::Committed<File>, CommandError<FileError>> {
        commands::execute(store, id, command, &self.meta, &()).await
    }

    async fn sequences(&self, id: &str) -> Vec<i64> {
        sqlx::query_scalar("SELECT sequence FROM events WHERE aggregate_id = $1 ORDER BY sequence")
            .bind(id)
            .fetch_all(&self.db.owner)
            .await
            .unwrap()
    }
}

fn create() -> FileCommand {
    FileCommand::Create {
        owner_id: UserId::new(),
        display_name: "a.txt".into(),
    }
}

fn tag(t: &str) -> FileCommand {
    FileCommand::Tag { tag: t.into() }
}

#[tokio::test]
async fn a_remembered_state_another_process_moved_past_is_decided_again() {
    let w = TwoProcesses::new().await;
    let id = uuid::Uuid::now_v7().to_string();
    w.run(&w.a, &id, create()).await.unwrap();
    w.run(&w.a, &id, tag("a")).await.unwrap();
    // Process b appends behind a's back: a's memory of the stream is now stale.
    w.run(&w.b, &id, tag("b")).await.unwrap();
    let renamed = w
        .run(
            &w.a,
            &id,
            FileCommand::Rename {
                display_name: "b.txt".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(renamed.sequence, 4, "appended after b's event, not over it");
    assert!(renamed.aggregate.tags.contains("b"), "decided on b's state");
    assert_eq!(w.sequences(&id).await, vec![1, 2, 3, 4]);
    let replayed = w.a.load_full_replay(&id).await.unwrap();
    assert_eq!(replayed.aggregate, renamed.aggregate);
    let report = chronicle::store::verify::verify_chains(&w.db.owner, None)
        .await
        .unwrap();
    assert!(report.is_intact(), "{:?}", report.breaks);
}

#[tokio::test]
async fn a_no_op_on_a_stale_remembered_state_is_decided_again() {
    let w = TwoProcesses::new().await;
    let id = uuid::Uuid::now_v7().to_string();
    w.run(&w.a, &id, create()).await.unwrap();
    w.run(&w.a, &id, tag("x")).await.unwrap();
    w.run(&w.b, &id, FileCommand::Untag { tag: "x".into() })
        .await
        .unwrap();
    // a remembers "x" as present, so on its memory tagging "x" would do nothing.
    let tagged = w.run(&w.a, &id, tag("x")).await.unwrap();
    assert_eq!(tagged.events.len(), 1, "the tag is applied, not skipped");
    assert!(tagged.aggregate.tags.contains("x"));
    assert_eq!(w.sequences(&id).await, vec![1, 2, 3, 4]);
}

#[tokio::test]
async fn a_no_op_on_a_current_remembered_state_appends_nothing() {
    let w = TwoProcesses::new().await;
    let id = uuid::Uuid::now_v7().to_string();
    w.run(&w.a, &id, create()).await.unwrap();
    w.run(&w.a, &id, tag("x")).await.unwrap();
    let again = w.run(&w.a, &id, tag("x")).await.unwrap();
    assert!(again.events.is_empty());
    assert_eq!(again.sequence, 2);
    assert_eq!(w.sequences(&id).await, vec![1, 2]);
}

#[tokio::test]
async fn a_refusal_on_a_stale_remembered_state_is_decided_again() {
    let w = TwoProcesses::new().await;
    let id = uuid::Uuid::now_v7().to_string();
    w.run(&w.a, &id, create()).await.unwrap();
    w.run(&w.b, &id, FileCommand::Delete).await.unwrap();
    // On a's memory the file is not deleted, so restoring it would be refused.
    let restored = w.run(&w.a, &id, FileCommand::Restore).await.unwrap();
    assert!(!restored.aggregate.deleted);
    assert_eq!(w.sequences(&id).await, vec![1, 2, 3]);
}

#[tokio::test]
async fn a_refusal_on_a_current_remembered_state_stands() {
    let w = TwoProcesses::new().await;
    let id = uuid::Uuid::now_v7().to_string();
    w.run(&w.a, &id, create()).await.unwrap();
    let err = w.run(&w.a, &id, FileCommand::Restore).await.unwrap_err();
    assert!(
        matches!(err, CommandError::Domain(FileError::NotDeleted)),
        "{err:?}"
    );
    assert_eq!(w.sequences(&id).await, vec![1]);
}

#[tokio::test]
async fn creating_a_stream_another_process_created_is_refused_not_appended() {
    let w = TwoProcesses::new().await;
    let id = uuid::Uuid::now_v7().to_string();
    w.run(&w.a, &id, create()).await.unwrap();
    // b has never seen the stream and presumes it empty: its append must lose.
    let err = w.run(&w.b, &id, create()).await.unwrap_err();
    assert!(
        matches!(err, CommandError::Domain(FileError::AlreadyExists)),
        "{err:?}"
    );
    // And a command on a stream b does not remember is decided on the loaded stream.
    let tagged = w.run(&w.b, &id, tag("t")).await.unwrap();
    assert_eq!(tagged.sequence, 2);
    assert_eq!(w.sequences(&id).await, vec![1, 2]);
}
