//! Concurrent writers of one file (src/store/writers.rs, src/commands): 32 clients upload
//! versions, rename and tag one file at once while the worker processes the versions.
//! Nobody gets a `409`: version numbers are contiguous, the worker completes every version,
//! and the read tables equal a rebuild from the log. Writers in two processes (two event
//! logs on one database) never fail each other either.

use std::time::Duration;

use chronicle::aggregates::{File, FileCommand};
use chronicle::commands::{self, CommandError};
use chronicle::ids::{FileId, TenantId, UserId};
use chronicle::projections::{self, rebuild::rebuild, runtime};
use chronicle::store::{Actor, ChronicleStore, EventLog, EventMetadata};
use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::Value;

use crate::common::eventually_within;
use crate::common::table_contents;
use crate::files_api::{Caller, World};

const CLIENTS: usize = 32;
/// Requests per client.
const ROUNDS: usize = 3;

fn form(bytes: Vec<u8>, name: &str) -> reqwest::multipart::Form {
    reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(bytes)
            .file_name(name.to_string())
            .mime_str("application/octet-stream")
            .unwrap(),
    )
}

/// Distinct bytes per (client, round), so no version is a duplicate of another.
fn bytes(client: usize, round: usize) -> Vec<u8> {
    format!("client {client} round {round} ")
        .repeat(200)
        .into_bytes()
}

/// One client's requests: uploads (half the clients), renames or tag/untag; returns
/// (status, the version number of an upload).
///
/// Like any well-behaved client, it retries `503` ("retry shortly": the app's database
/// pool was exhausted, which a suite running beside this test on two cores can cause)
/// with the same `Idempotency-Key`, so a retried request still takes effect once.
async fn client(w: &World, who: &Caller, file: &str, i: usize) -> Vec<(StatusCode, Option<u64>)> {
    let mut answers = Vec::new();
    for round in 0..ROUNDS {
        let key = format!("writer-{i}-{round}-{}", uuid::Uuid::new_v4());
        let mut attempt = 0;
        let (status, body) = loop {
            attempt += 1;
            let request = match i % 4 {
                0 | 1 => {
                    w.t.http
                        .post(w.t.url(&format!("/v1/files/{file}/versions")))
                        .multipart(form(bytes(i, round), &format!("v-{i}-{round}.bin")))
                }
                2 => {
                    w.t.http
                        .patch(w.t.url(&format!("/v1/files/{file}")))
                        .json(&serde_json::json!({"display_name": format!("name {i}.{round}")}))
                }
                _ if round % 2 == 0 => {
                    w.t.http
                        .put(w.t.url(&format!("/v1/files/{file}/tags/t{i}")))
                }
                _ => {
                    w.t.http
                        .delete(w.t.url(&format!("/v1/files/{file}/tags/t{i}")))
                }
            };
            let r = request
                .bearer_auth(&who.token)
                .header("Idempotency-Key", &key)
                .send()
                .await
                .unwrap();
            let status = r.status();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            if status == StatusCode::SERVICE_UNAVAILABLE && attempt < 10 {
                tokio::time::sleep(Duration::from_millis(250 * attempt)).await;
                continue;
            }
            break (status, body);
        };
        assert!(status.is_success(), "client {i}: {status} {body}");
        answers.push((status, body["version_number"].as_u64()));
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_clients_write_one_file_and_nobody_gets_a_conflict() {
    let w = World::new(&[("WORKER_CONCURRENCY", "2")]).await;
    let r =
        w.t.http
            .post(w.t.url("/v1/files"))
            .bearer_auth(&w.admin.token)
            .multipart(form(bytes(999, 0), "shared.bin"))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let file = r.json::<Value>().await.unwrap()["file_id"]
        .as_str()
        .unwrap()
        .to_string();

    let answers = join_all((0..CLIENTS).map(|i| client(&w, &w.admin, &file, i))).await;
    let answers: Vec<_> = answers.into_iter().flatten().collect();
    assert_eq!(answers.len(), CLIENTS * ROUNDS);
    let conflicts = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::CONFLICT)
        .count();
    assert_eq!(conflicts, 0);

    // Version numbers: 1 (the creation) and then 2..=N without a gap or a repeat.
    let mut numbers: Vec<u64> = answers.iter().filter_map(|(_, n)| *n).collect();
    numbers.sort_unstable();
    let uploads = CLIENTS / 2 * ROUNDS;
    assert_eq!(numbers, (2..=uploads as u64 + 1).collect::<Vec<_>>());

    // The worker completes every version (it writes to the same stream meanwhile).
    let id: uuid::Uuid = file.parse().unwrap();
    eventually_within(
        "every version completed",
        Duration::from_secs(180),
        async || {
            let completed: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM file_versions WHERE file_id = $1 AND status = 'completed'",
            )
            .bind(id)
            .fetch_one(&w.t.db.owner)
            .await
            .unwrap();
            (completed == uploads as i64 + 1).then_some(())
        },
    )
    .await;
    let failed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_id = $1 AND event_type = 'ProcessingFailed'",
    )
    .bind(&file)
    .fetch_one(&w.t.db.owner)
    .await
    .unwrap();
    assert_eq!(failed, 0, "no worker step failed");

    // The read tables equal a replay of the log.
    let files = projections::by_name("files").expect("files is registered");
    runtime::catch_up(&w.t.db.worker, files.as_ref())
        .await
        .unwrap();
    let mut live = Vec::new();
    for table in files.tables() {
        live.push(table_contents(&w.t.db.worker, table).await);
    }
    rebuild(&w.t.db.worker, files.clone()).await.unwrap();
    for (table, before) in files.tables().iter().zip(&live) {
        assert_eq!(
            &table_contents(&w.t.db.worker, table).await,
            before,
            "{table} differs from a rebuild"
        );
    }
    w.t.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writers_in_two_processes_retry_until_their_commands_commit() {
    let w = World::new(&[]).await;
    let tenant = TenantId(w.tenant);
    // Two event logs, each with its own turn locks: what two instances would have.
    let pool = w.t.app.state.db.clone();
    let logs = [EventLog::new(pool.clone()), EventLog::new(pool)];
    let file = FileId::new().to_string();
    let meta = EventMetadata::new(tenant, Actor::User(UserId(w.admin.id)), "test");
    let first = ChronicleStore::<File>::new(logs[0].clone(), tenant, 10);
    let create = FileCommand::Create {
        owner_id: UserId(w.admin.id),
        display_name: "shared".into(),
    };
    commands::execute(&first, &file, create, &meta, &())
        .await
        .unwrap();
    let results = join_all((0..CLIENTS).map(|i| {
        let store = ChronicleStore::<File>::new(logs[i % 2].clone(), tenant, 10);
        let (file, meta) = (file.clone(), meta.clone());
        async move {
            let command = if i % 2 == 0 {
                FileCommand::Tag {
                    tag: format!("t{i}"),
                }
            } else {
                FileCommand::Rename {
                    display_name: format!("name {i}"),
                }
            };
            commands::execute(&store, &file, command, &meta, &()).await
        }
    }))
    .await;
    for (i, r) in results.iter().enumerate() {
        assert!(
            !matches!(r, Err(CommandError::Conflict)),
            "command {i} gave up on a conflict"
        );
        assert!(r.is_ok(), "command {i}: {:?}", r.as_ref().err());
    }
    let sequences: Vec<i64> =
        sqlx::query_scalar("SELECT sequence FROM events WHERE aggregate_id = $1 ORDER BY sequence")
            .bind(&file)
            .fetch_all(&w.t.db.owner)
            .await
            .unwrap();
    assert_eq!(sequences, (1..=CLIENTS as i64 + 1).collect::<Vec<_>>());
    w.t.app.stop().await;
}
