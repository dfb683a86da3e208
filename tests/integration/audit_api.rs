//! The auditor's HTTP API: `GET /v1/audit` filters, paging, roles and tenant isolation;
//! `GET /v1/audit/verify` for the caller's tenant; `GET /v1/audit/export` NDJSON whose
//! lines parse and whose hashes recompute, equal to `chronicle audit export`.

use chronicle::aggregates::{File, FileCommand};
use chronicle::commands;
use chronicle::ids::{TenantId, UserId};
use chronicle::projections::status::status;
use chronicle::store::hash::{Attribution, HashInput, canonical_json, event_hash, event_hash_v2};
use chronicle::store::{Actor, ChronicleStore, EventMetadata};
use reqwest::StatusCode;
use serde_json::Value;
use uuid::Uuid;

use crate::common::eventually;
use crate::files_api::{Caller, World};

/// Runs `command` on `file` as `actor`.
async fn act(w: &World, actor: Uuid, file: Uuid, command: FileCommand) {
    let store = ChronicleStore::<File>::new(w.t.app.state.events.clone(), TenantId(w.tenant), 10);
    let meta = EventMetadata::new(TenantId(w.tenant), Actor::User(UserId(actor)), "req-audit");
    commands::execute(&store, &file.to_string(), command, &meta, &())
        .await
        .unwrap();
}

async fn audit_caught_up(w: &World) {
    eventually("the audit_logs projector catches up", async || {
        let all = status(&w.t.db.worker).await.unwrap();
        all.iter()
            .any(|p| p.name == "audit_logs" && p.lag_events == 0)
    })
    .await;
}

/// Every entry of `query`, following cursors with pages of `limit`.
async fn all_pages(w: &World, who: &Caller, query: &str, limit: u32) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/audit?limit={limit}&{query}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (status, page) = w.send("GET", &path, who).await;
        assert_eq!(status, StatusCode::OK, "{path}: {page}");
        out.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
}

fn ids(entries: &[Value]) -> Vec<i64> {
    entries.iter().map(|e| e["id"].as_i64().unwrap()).collect()
}

#[tokio::test]
async fn the_audit_log_filters_pages_and_is_for_auditors_and_admins_of_the_tenant() {
    let w = World::new(&[]).await;
    let auditor = w.join("audrey", "auditor").await;
    let user = w.join("bob", "user").await;
    let first = w.create(&user, "a").await;
    let second = w.create(&user, "b").await;
    for i in 0..4 {
        act(
            &w,
            user.id,
            first,
            FileCommand::Rename {
                display_name: format!("a{i}"),
            },
        )
        .await;
        act(
            &w,
            auditor.id,
            second,
            FileCommand::Tag {
                tag: format!("t{i}"),
            },
        )
        .await;
    }
    audit_caught_up(&w).await;

    let everything = all_pages(&w, &auditor, "", 200).await;
    let paged = all_pages(&w, &auditor, "", 3).await;
    assert_eq!(
        ids(&paged),
        ids(&everything),
        "paging neither skips nor repeats"
    );
    let mut sorted = everything.clone();
    sorted.sort_by(|a, b| {
        (b["created_at"].as_str(), b["id"].as_i64())
            .cmp(&(a["created_at"].as_str(), a["id"].as_i64()))
    });
    assert_eq!(ids(&sorted), ids(&everything), "newest first");

    let on_first = all_pages(
        &w,
        &auditor,
        &format!("target_type=file&target_id={first}"),
        2,
    )
    .await;
    assert_eq!(on_first.len(), 5);
    assert!(
        on_first
            .iter()
            .all(|e| e["target_id"] == first.to_string().as_str())
    );
    let seqs: Vec<i64> = on_first
        .iter()
        .map(|e| e["sequence"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, vec![5, 4, 3, 2, 1]);
    // The user's own account events carry its id too; its file actions are the renames
    // (the creates ran as a random user).
    let by_user = all_pages(&w, &auditor, &format!("actor={}", user.id), 50).await;
    assert!(
        by_user
            .iter()
            .all(|e| e["actor"] == user.id.to_string().as_str())
    );
    let on_files: Vec<&Value> = by_user
        .iter()
        .filter(|e| e["target_type"] == "file")
        .collect();
    assert_eq!(on_files.len(), 4, "{by_user:?}");
    assert!(
        on_files
            .iter()
            .all(|e| e["action"] == "file.renamed" && e["request_id"] == "req-audit")
    );
    let both = all_pages(
        &w,
        &auditor,
        &format!("actor={}&action=file.renamed", user.id),
        50,
    )
    .await;
    assert_eq!(
        ids(&both),
        on_files
            .iter()
            .map(|e| e["id"].as_i64().unwrap())
            .collect::<Vec<_>>()
    );
    let tagged = all_pages(&w, &auditor, "action=file.tagged", 50).await;
    assert_eq!(tagged.len(), 4);
    assert!(
        tagged
            .iter()
            .all(|e| e["actor"] == auditor.id.to_string().as_str()
                && e["details"]["Tagged"]["tag"].is_string())
    );
    // A time window: from the 3rd oldest tag's time on; `to` excludes its bound.
    let oldest_first: Vec<&Value> = tagged.iter().rev().collect();
    let from = oldest_first[2]["created_at"].as_str().unwrap();
    let to = oldest_first[3]["created_at"].as_str().unwrap();
    let window = all_pages(
        &w,
        &auditor,
        &format!("action=file.tagged&from={from}&to={to}"),
        50,
    )
    .await;
    assert_eq!(ids(&window), vec![oldest_first[2]["id"].as_i64().unwrap()]);

    let (status, _) = w.send("GET", "/v1/audit", &w.admin).await;
    assert_eq!(status, StatusCode::OK, "admins read the audit log");
    let (status, body) = w.send("GET", "/v1/audit", &user).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    for (query, expected) in [
        ("limit=0", StatusCode::BAD_REQUEST),
        ("limit=201", StatusCode::BAD_REQUEST),
        ("from=yesterday", StatusCode::BAD_REQUEST),
        ("cursor=bm90LWEtY3Vyc29y", StatusCode::BAD_REQUEST),
        (
            &format!("actor={}", "x".repeat(300)),
            StatusCode::BAD_REQUEST,
        ),
        (
            "from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        ("target_id=abc", StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let (status, body) = w.send("GET", &format!("/v1/audit?{query}"), &auditor).await;
        assert_eq!(status, expected, "{query}: {body}");
        assert!(body["error"]["message"].is_string(), "{body}");
    }

    // Another tenant sees none of it, and cannot use this tenant's cursor.
    let (_, other) = crate::files_api::tenant(&w.t, "zed").await;
    audit_caught_up(&w).await;
    let theirs = all_pages(&w, &other, "", 200).await;
    assert!(
        theirs
            .iter()
            .all(|e| !ids(&everything).contains(&e["id"].as_i64().unwrap()))
    );
    let page = w.send("GET", "/v1/audit?limit=1", &auditor).await.1;
    let cursor = page["next_cursor"].as_str().unwrap();
    let (status, _) = w
        .send("GET", &format!("/v1/audit?cursor={cursor}"), &other)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, page) = w
        .send(
            "GET",
            &format!("/v1/audit?target_type=file&target_id={first}"),
            &other,
        )
        .await;
    assert_eq!(
        (status, page["items"].as_array().unwrap().len()),
        (StatusCode::OK, 0)
    );
}

#[tokio::test]
async fn verify_reports_the_callers_tenant_only_with_the_workers_checkpoints() {
    // The worker inside this app takes a checkpoint every second with this key.
    let seed = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
    let event_key = crate::audit_fixture::event_key_env();
    let w = World::new(&[
        ("CHECKPOINT_EVERY_SECS", "1"),
        ("CHECKPOINT_SIGNING_KEY", seed),
        ("EVENT_SIGNING_KEY", event_key.as_str()),
    ])
    .await;
    let auditor = w.join("audrey", "auditor").await;
    let user = w.join("bob", "user").await;
    let file = w.create(&user, "a").await;
    act(&w, user.id, file, FileCommand::Tag { tag: "x".into() }).await;
    let (_, other) = crate::files_api::tenant(&w.t, "zed").await;

    let report = w
        .get_until("/v1/audit/verify", &auditor, |r| {
            r["checkpoints"].as_array().is_some_and(|c| !c.is_empty())
        })
        .await;
    assert_eq!(report["intact"], true, "{report}");
    assert_eq!(report["checkpoint_key_trusted"], true);
    assert_eq!(report["signatures_checked"], true);
    let checkpoints = report["checkpoints"].as_array().unwrap();
    assert_eq!(checkpoints.len(), 1, "the caller's tenant only: {report}");
    assert_eq!(checkpoints[0]["tenant_id"], w.tenant.to_string().as_str());
    let unprotected = report["unprotected"].as_array().unwrap();
    assert_eq!(unprotected.len(), 1, "{report}");
    assert_eq!(unprotected[0]["tenant_id"], w.tenant.to_string().as_str());
    assert!(unprotected[0]["events"].is_i64(), "{report}");

    // A digest kept from an earlier audit must still be in the chain.
    let kept = checkpoints[0]["digest"].as_str().unwrap().to_string();
    let (status, pinned) = w
        .send(
            "GET",
            &format!("/v1/audit/verify?trusted_digest={kept}"),
            &auditor,
        )
        .await;
    assert_eq!(
        (status, &pinned["intact"]),
        (StatusCode::OK, &Value::Bool(true)),
        "{pinned}"
    );
    let unknown = "0f".repeat(32);
    let (_, rolled) = w
        .send(
            "GET",
            &format!("/v1/audit/verify?trusted_digest={unknown}"),
            &auditor,
        )
        .await;
    assert_eq!(rolled["intact"], false, "{rolled}");
    assert_eq!(rolled["breaks"][0]["problem"], "checkpoint_rollback");
    let (status, body) = w
        .send("GET", "/v1/audit/verify?trusted_digest=XYZ", &auditor)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(report["events"].as_i64().unwrap() >= 2);
    let (status, _) = w.send("GET", "/v1/audit/verify", &user).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    crate::audit_verify::tamper(&w.t.db, r#"UPDATE events SET payload = '{"Tagged":{"tag":"y"}}' WHERE aggregate_id = $1 AND sequence = 2"#, &file.to_string()).await;
    let (_, report) = w.send("GET", "/v1/audit/verify", &auditor).await;
    assert_eq!(report["intact"], false, "{report}");
    let breaks = report["breaks"].as_array().unwrap();
    assert_eq!(breaks.len(), 1);
    assert_eq!(breaks[0]["problem"], "hash_mismatch");
    assert_eq!(breaks[0]["aggregate_id"], file.to_string().as_str());
    let (_, theirs) = w.send("GET", "/v1/audit/verify", &other).await;
    assert_eq!(theirs["intact"], true, "another tenant's report: {theirs}");
}

/// An export line's hash recomputed from the line alone (docs/audit.md), by version.
fn recomputed_hash(line: &Value) -> String {
    let meta = &line["metadata"];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let payload = canonical_json(&line["payload"]);
    let input = HashInput {
        tenant_id: line["tenant_id"].as_str().unwrap(),
        aggregate_type: line["aggregate_type"].as_str().unwrap(),
        aggregate_id: line["aggregate_id"].as_str().unwrap(),
        sequence: line["sequence"].as_u64().unwrap(),
        event_type: line["event_type"].as_str().unwrap(),
        event_version: line["event_version"].as_str().unwrap(),
        payload: &payload,
        prev_hash: meta["prev_hash"].as_str().unwrap(),
    };
    match meta["hash_version"].as_str() {
        Some("2") => event_hash_v2(
            &input,
            &Attribution {
                recorded_at: line["recorded_at"].as_str().unwrap(),
                actor: &text(&meta["actor"]),
                request_id: &text(&meta["request_id"]),
                correlation_id: &text(&meta["correlation_id"]),
                causation_id: &text(&meta["causation_id"]),
            },
        ),
        _ => event_hash(&input),
    }
}

/// The event lines of an export, and its other lines (header, checkpoints, end).
fn event_lines(body: &str) -> (Vec<Value>, Vec<Value>) {
    body.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .partition(|l| l["type"] == "event")
}

async fn export(w: &World, who: &Caller, query: &str) -> (StatusCode, Option<String>, String) {
    let r =
        w.t.http
            .get(w.t.url(&format!("/v1/audit/export{query}")))
            .bearer_auth(&who.token)
            .send()
            .await
            .unwrap();
    let kind = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    (r.status(), kind, r.text().await.unwrap())
}

#[tokio::test]
async fn export_streams_ndjson_whose_hashes_recompute_and_matches_the_cli() {
    let w = World::new(&[]).await;
    let auditor = w.join("audrey", "auditor").await;
    let user = w.join("bob", "user").await;
    let file = w.create(&user, "a \"quoted\" naïve \\ name").await;
    for i in 0..30 {
        act(
            &w,
            user.id,
            file,
            FileCommand::Tag {
                tag: format!("t{i}"),
            },
        )
        .await;
    }
    let (_, other) = crate::files_api::tenant(&w.t, "zed").await;
    let (status, kind, body) = export(&w, &auditor, "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(kind.as_deref(), Some("application/x-ndjson"));
    let (lines, others) = event_lines(&body);
    assert_eq!(others[0]["type"], "export");
    assert_eq!(others[0]["complete"], true);
    assert_eq!(others.last().unwrap()["type"], "end");
    assert_eq!(others.last().unwrap()["events"], lines.len());
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE tenant_id = $1")
        .bind(w.tenant)
        .fetch_one(&w.t.db.owner)
        .await
        .unwrap();
    assert_eq!(
        lines.len() as i64,
        stored,
        "every event of the tenant, one per line"
    );
    let mut positions = Vec::new();
    for line in &lines {
        assert_eq!(line["tenant_id"], w.tenant.to_string().as_str());
        assert_eq!(
            recomputed_hash(line),
            line["metadata"]["hash"].as_str().unwrap(),
            "{line}"
        );
        assert!(
            line.get("hash").is_none(),
            "one copy of the hash: in metadata"
        );
        positions.push(line["global_position"].as_i64().unwrap());
    }
    assert!(positions.windows(2).all(|p| p[0] < p[1]), "append order");
    let of_file: Vec<&Value> = lines
        .iter()
        .filter(|l| l["aggregate_id"] == file.to_string().as_str())
        .collect();
    assert_eq!(of_file.len(), 31);
    assert_eq!(
        of_file[0]["payload"]["FileCreated"]["display_name"],
        "a \"quoted\" naïve \\ name"
    );

    // since/until select by recorded_at; until is exclusive.
    let since = of_file[10]["recorded_at"].as_str().unwrap();
    let until = of_file[20]["recorded_at"].as_str().unwrap();
    let (_, _, part) = export(&w, &auditor, &format!("?since={since}&until={until}")).await;
    let (part, part_others) = event_lines(&part);
    assert_eq!(part_others[0]["complete"], false);
    let expected: Vec<&Value> = lines
        .iter()
        .filter(|l| {
            let at = l["recorded_at"].as_str().unwrap();
            at >= since && at < until
        })
        .collect();
    assert_eq!(part.iter().collect::<Vec<_>>(), expected);
    assert!(part.len() >= 10);

    let (status, _, body) = export(&w, &auditor, &format!("?since={until}&until={since}")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, _, _) = export(&w, &user, "").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, _, theirs) = export(&w, &other, "").await;
    assert!(
        !theirs.contains(&w.tenant.to_string()),
        "another tenant exports only its own"
    );

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_chronicle"))
        .args(["audit", "export", "--tenant", &w.tenant.to_string()])
        .env("DATABASE_URL", &w.t.db.url)
        .envs(crate::common::pooler_env(&w.t.db.url))
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, _, again) = export(&w, &auditor, "").await;
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        again,
        "the CLI writes the same lines"
    );
}
