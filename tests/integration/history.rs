//! A file's past over HTTP: time travel (`?at_version`, `?as_of`) over a long stream
//! with snapshots equals a full replay truncated at that point and has the live
//! resource's shape; bad points are refused; `/history` pages through every event with
//! its hashes; who may see what.

use std::collections::BTreeSet;

use chronicle::aggregates::FileCommand;
use chronicle::aggregates::file::{File, FileEvent};
use cqrs_es::Aggregate;
use reqwest::StatusCode;
use serde_json::Value;
use uuid::Uuid;

use crate::files_api::World;

/// A file with 70 events: renames, tags, untags, three completed versions, a delete
/// and a restore. Returns its id.
async fn long_stream(w: &World, owner: &crate::files_api::Caller) -> Uuid {
    let file = w.create(owner, "start").await;
    for i in 0..25 {
        w.run(
            file,
            FileCommand::Rename {
                display_name: format!("name-{i}"),
            },
        )
        .await;
        w.run(
            file,
            FileCommand::Tag {
                tag: format!("t{i}"),
            },
        )
        .await;
        if i % 5 == 4 {
            w.run(
                file,
                FileCommand::Untag {
                    tag: format!("t{}", i - 2),
                },
            )
            .await;
        }
        if i % 8 == 7 {
            w.complete(file, (i / 8 + 1) as u32, &format!("bytes{i}"))
                .await;
        }
        if i == 20 {
            w.run(file, FileCommand::Delete).await;
            w.run(file, FileCommand::Restore).await;
        }
    }
    file
}

/// The reference: every stored event, and the state after each (a plain fold from
/// `File::default()`, no snapshot involved). `states[n]` is the state after event n.
async fn reference(w: &World, file: Uuid) -> (Vec<(i64, String)>, Vec<File>) {
    let rows: Vec<(i64, String, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
        "SELECT sequence, payload::text, recorded_at FROM events
          WHERE tenant_id = $1 AND aggregate_type = 'file' AND aggregate_id = $2 ORDER BY sequence",
    )
    .bind(w.tenant)
    .bind(file.to_string())
    .fetch_all(&w.t.db.owner)
    .await
    .unwrap();
    let mut states = vec![File::default()];
    let mut times = Vec::new();
    for (seq, payload, at) in rows {
        let mut next = states.last().unwrap().clone();
        next.apply(serde_json::from_str::<FileEvent>(&payload).unwrap());
        states.push(next);
        times.push((seq, at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)));
    }
    (times, states)
}

fn assert_matches(view: &Value, state: &File, n: usize) {
    assert_eq!(view["display_name"], state.display_name.as_str(), "at {n}");
    let tags: BTreeSet<String> = view["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    assert_eq!(tags, state.tags, "at {n}");
    assert_eq!(view["is_deleted"], state.deleted, "at {n}");
    let current = state.current_version().map(|v| v.number as i64);
    assert_eq!(
        view["current_version"]["version_number"].as_i64(),
        current,
        "at {n}"
    );
    let latest = state.versions.last().map(|v| v.number as i64);
    assert_eq!(
        view["latest_version"]["version_number"].as_i64(),
        latest,
        "at {n}"
    );
}

#[tokio::test]
async fn time_travel_equals_a_truncated_full_replay_at_many_points_of_a_long_stream() {
    let w = World::new(&[]).await;
    let auditor = w.join("audrey", "auditor").await;
    let file = long_stream(&w, &w.admin).await;
    let (times, states) = reference(&w, file).await;
    let end = times.len();
    assert!(end >= 60, "a long stream: {end} events");
    let snapshot: i64 = sqlx::query_scalar(
        "SELECT last_sequence FROM snapshots WHERE tenant_id = $1 AND aggregate_id = $2",
    )
    .bind(w.tenant)
    .bind(file.to_string())
    .fetch_one(&w.t.db.owner)
    .await
    .unwrap();
    for n in [1, 2, 9, 10, 11, 23, 37, 44, 58, end - 1, end] {
        let (status, view) = w
            .send("GET", &format!("/v1/files/{file}?at_version={n}"), &auditor)
            .await;
        assert_eq!(status, StatusCode::OK, "at {n}: {view}");
        assert_matches(&view, &states[n], n);
        if n < end - 10 {
            assert!(
                snapshot > n as i64,
                "a snapshot ({snapshot}) lies beyond {n}, yet was not used"
            );
        }
    }
    // as_of: the state after the last event recorded at or before that instant.
    for k in [3, 30, 61] {
        let (_, at) = &times[k - 1];
        let later = times
            .iter()
            .filter(|(_, t)| t == at)
            .map(|(s, _)| *s as usize)
            .max()
            .unwrap();
        let (status, view) = w
            .send("GET", &format!("/v1/files/{file}?as_of={at}"), &auditor)
            .await;
        assert_eq!(status, StatusCode::OK, "as_of {at}: {view}");
        assert_matches(&view, &states[later], later);
    }
}

#[tokio::test]
async fn time_travel_has_the_live_shape_and_refuses_bad_points() {
    let w = World::new(&[]).await;
    let owner = w.join("olga", "user").await;
    let stranger = w.join("sam", "user").await;
    let file = w.create(&owner, "report").await;
    w.run(file, FileCommand::Tag { tag: "q3".into() }).await;
    w.complete(file, 1, "abc").await;
    w.run(
        file,
        FileCommand::Rename {
            display_name: "final".into(),
        },
    )
    .await;
    w.settled().await;
    let live = w
        .get_until(&format!("/v1/files/{file}"), &owner, |v| {
            v["display_name"] == "final"
        })
        .await;
    let end: i64 = sqlx::query_scalar("SELECT max(sequence) FROM events WHERE aggregate_id = $1")
        .bind(file.to_string())
        .fetch_one(&w.t.db.owner)
        .await
        .unwrap();
    let (_, at_end) = w
        .send("GET", &format!("/v1/files/{file}?at_version={end}"), &owner)
        .await;
    assert_eq!(
        at_end, live,
        "rebuilt state has exactly the live resource's JSON"
    );
    let (_, future) = w
        .send(
            "GET",
            &format!("/v1/files/{file}?as_of=2999-01-01T00:00:00Z"),
            &owner,
        )
        .await;
    assert_eq!(future, live, "as_of in the future = the live state rebuilt");
    let (status, first) = w
        .send("GET", &format!("/v1/files/{file}?at_version=1"), &owner)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (
            first["display_name"].as_str(),
            first["tags"].as_array().unwrap().len()
        ),
        (Some("report"), 0)
    );
    assert_eq!(first["created_at"], live["created_at"]);
    assert!(first["current_version"].is_null() && first["latest_version"].is_null());

    let base = format!("/v1/files/{file}");
    let beyond = format!("?at_version={}", end + 1);
    for (query, status) in [
        ("?at_version=0", StatusCode::NOT_FOUND),
        (beyond.as_str(), StatusCode::NOT_FOUND),
        ("?as_of=2000-01-01T00:00:00Z", StatusCode::NOT_FOUND),
        ("?at_version=-1", StatusCode::BAD_REQUEST),
        ("?at_version=two", StatusCode::BAD_REQUEST),
        ("?as_of=yesterday", StatusCode::BAD_REQUEST),
        (
            "?as_of=2999-01-01T00:00:00Z&at_version=1",
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (got, body) = w.send("GET", &format!("{base}{query}"), &owner).await;
        assert_eq!(got, status, "{query}: {body}");
        assert!(body["error"]["code"].is_string(), "{query}: {body}");
    }
    // Readers of the file may travel; others see nothing, as for the live file.
    let (status, _) = w
        .send("GET", &format!("{base}?at_version=2"), &stranger)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (other, other_admin) = crate::files_api::tenant(&w.t, "zed").await;
    assert_ne!(other, w.tenant);
    let (status, _) = w
        .send("GET", &format!("{base}?at_version=2"), &other_admin)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another tenant");
    let (status, _) = w
        .send(
            "GET",
            &format!("/v1/files/{}?at_version=1", Uuid::now_v7()),
            &w.admin,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn history_pages_through_every_event_with_hashes_for_auditors_and_admins_only() {
    let w = World::new(&[]).await;
    let auditor = w.join("audrey", "auditor").await;
    let owner = w.join("olga", "user").await;
    let file = w.create(&owner, "report").await;
    for i in 0..15 {
        w.run(
            file,
            FileCommand::Tag {
                tag: format!("t{i}"),
            },
        )
        .await;
    }
    let mut events: Vec<Value> = Vec::new();
    let mut after = 0;
    loop {
        let (status, page) = w
            .send(
                "GET",
                &format!("/v1/files/{file}/history?limit=7&after={after}"),
                &auditor,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        events.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_after"].as_i64() {
            Some(next) => after = next,
            None => break,
        }
    }
    assert_eq!(events.len(), 16);
    let mut prev = "0".repeat(64);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["sequence"], i as i64 + 1);
        assert_eq!(
            e["prev_hash"],
            prev.as_str(),
            "the chain links page to page"
        );
        assert_eq!(e["hash"].as_str().unwrap().len(), 64);
        assert!(
            e["metadata"]["actor"].is_string() && e["metadata"]["request_id"].is_string(),
            "{e}"
        );
        assert!(
            e["recorded_at"].is_string()
                && e["payload"].is_object()
                && e["event_version"].is_string()
        );
        prev = e["hash"].as_str().unwrap().to_string();
    }
    assert_eq!(events[0]["event_type"], "FileCreated");
    assert_eq!(events[3]["payload"]["Tagged"]["tag"], "t2");

    let (status, _) = w
        .send("GET", &format!("/v1/files/{file}/history"), &w.admin)
        .await;
    assert_eq!(status, StatusCode::OK, "admins read history");
    let (status, body) = w
        .send("GET", &format!("/v1/files/{file}/history"), &owner)
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    let (_, other_admin) = crate::files_api::tenant(&w.t, "zed").await;
    let (status, _) = w
        .send("GET", &format!("/v1/files/{file}/history"), &other_admin)
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "another tenant's file does not exist for it"
    );
    let (status, _) = w
        .send(
            "GET",
            &format!("/v1/files/{}/history", Uuid::now_v7()),
            &auditor,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for bad in ["limit=0", "limit=201", "after=-1", "after=x"] {
        let (status, _) = w
            .send("GET", &format!("/v1/files/{file}/history?{bad}"), &auditor)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }
}

#[tokio::test]
async fn the_history_command_prints_one_line_per_event_then_the_state() {
    let w = World::new(&[]).await;
    let file = w.create(&w.admin, "report").await;
    w.run(file, FileCommand::Tag { tag: "q3".into() }).await;
    w.run(
        file,
        FileCommand::Rename {
            display_name: "final".into(),
        },
    )
    .await;
    let hashes: Vec<String> = sqlx::query_scalar(
        "SELECT metadata->>'hash' FROM events WHERE aggregate_id = $1 ORDER BY sequence",
    )
    .bind(file.to_string())
    .fetch_all(&w.t.db.owner)
    .await
    .unwrap();
    let history = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_chronicle"))
            .args(["audit", "history", "--file", &file.to_string()])
            .args(extra)
            .env("DATABASE_URL", &w.t.db.url)
            .envs(crate::common::pooler_env(&w.t.db.url))
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8(out.stdout).unwrap())
    };
    let (code, out) = history(&[]);
    assert_eq!(code, Some(0), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    for (i, (kind, hash)) in ["FileCreated v1", "Tagged v1", "Renamed v1"]
        .iter()
        .zip(&hashes)
        .enumerate()
    {
        let line = lines[1 + i];
        assert!(
            line.trim_start().starts_with(&format!("{} ", i + 1)),
            "{line}"
        );
        assert!(line.contains(kind) && line.contains(&hash[..12]), "{line}");
    }
    assert!(
        lines[3].contains(r#"{"Renamed":{"display_name":"final"}}"#),
        "{out}"
    );
    assert_eq!(lines[4], "state after sequence 3:");
    assert!(out.contains(r#""display_name": "final""#), "{out}");

    let (code, out) = history(&["--as-of", "2000-01-01T00:00:00Z"]);
    assert_eq!(code, Some(1), "before the file existed: {out}");
}
