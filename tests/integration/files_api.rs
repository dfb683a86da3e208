//! The files read/manage API over HTTP: paging and filters, commands and their
//! validation, who may see and change what, tenant isolation. The cache tests are in
//! files_api/cache.rs. Files are made through `commands::execute` (the upload endpoint
//! belongs to the worker slice); tests poll until the projector has caught up.

mod cache;
mod listing_cache;

use std::collections::HashSet;

use chronicle::aggregates::file::{FinalBlob, NewVersion};
use chronicle::aggregates::{File, FileCommand};
use chronicle::app::Mode;
use chronicle::commands;
use chronicle::ids::{FileId, TenantId, UserId};
use chronicle::projections::status::status;
use chronicle::store::{Actor, ChronicleStore, EventMetadata};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::common::{Client, TestApp, eventually, eventually_some};

/// The counter `chronicle_{name}_total` from `/metrics` of the instance at `base`.
pub async fn counter(http: &reqwest::Client, base: &str, name: &str) -> u64 {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = format!("chronicle_{name}_total ");
    text.lines()
        .find_map(|l| l.strip_prefix(&line))
        .unwrap_or_else(|| panic!("no {line} in /metrics"))
        .trim()
        .parse()
        .unwrap()
}

const SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

pub struct Caller {
    pub id: Uuid,
    pub token: String,
}

impl From<Client> for Caller {
    fn from(c: Client) -> Caller {
        Caller {
            id: c.user_id.parse().unwrap(),
            token: c.token,
        }
    }
}

/// One tenant with an admin; more callers join by invitation.
pub struct World {
    pub t: TestApp,
    pub tenant: Uuid,
    pub admin: Caller,
}

pub async fn app(overrides: &[(&str, &str)]) -> TestApp {
    let mut all = vec![
        ("JWT_SECRET", SECRET),
        ("AUTH_RATE_LIMIT_PER_MINUTE", "10000"),
        ("RATE_LIMIT_PER_MINUTE", "1000000"),
    ];
    all.extend_from_slice(overrides);
    TestApp::spawn(Mode::Serve, &all).await
}

/// Registers a new tenant and signs its admin in.
pub async fn tenant(t: &TestApp, handle: &str) -> (Uuid, Caller) {
    let admin = t.signup(handle).await;
    (admin.tenant_id.parse().unwrap(), Caller::from(admin))
}

impl World {
    pub async fn new(overrides: &[(&str, &str)]) -> World {
        let t = app(overrides).await;
        let (tenant, admin) = tenant(&t, "ada").await;
        World { t, tenant, admin }
    }

    /// Invites `handle` with `role` and signs them in.
    pub async fn join(&self, handle: &str, role: &str) -> Caller {
        Caller::from(self.t.join(&self.admin.token, handle, role).await)
    }

    fn store(&self) -> ChronicleStore<File> {
        ChronicleStore::new(self.t.app.state.events.clone(), TenantId(self.tenant), 10)
    }

    pub async fn run(&self, file: Uuid, command: FileCommand) {
        let meta = EventMetadata::new(TenantId(self.tenant), Actor::User(UserId::new()), "test");
        commands::execute(&self.store(), &file.to_string(), command, &meta, &())
            .await
            .unwrap();
    }

    /// A file of `owner` without versions.
    pub async fn create(&self, owner: &Caller, name: &str) -> Uuid {
        let id = FileId::new().0;
        let command = FileCommand::Create {
            owner_id: UserId(owner.id),
            display_name: name.into(),
        };
        self.run(id, command).await;
        id
    }

    /// Uploads version `n` with `bytes` and walks the worker's steps to `completed`.
    pub async fn complete(&self, file: Uuid, n: u32, bytes: &str) {
        self.run(file, upload(bytes)).await;
        let start = FileCommand::StartProcessing {
            version_number: n,
            attempt: 1,
        };
        self.run(file, start).await;
        let hash = FileCommand::RecordHash {
            version_number: n,
            sha256: sha(bytes),
        };
        self.run(file, hash).await;
        let done = FileCommand::Complete {
            version_number: n,
            result: FinalBlob {
                storage_key: format!("blobs/{}", sha(bytes)),
                size_bytes: bytes.len() as u64,
                sha256: sha(bytes),
                detected_mime: "application/pdf".into(),
            },
        };
        self.run(file, done).await;
    }

    /// Waits until the files projector has applied every committed event.
    pub async fn settled(&self) {
        eventually(
            "the files projector applied every committed event",
            async || {
                let all = status(&self.t.db.worker).await.unwrap();
                all.iter().any(|p| p.name == "files" && p.lag_events == 0)
            },
        )
        .await;
    }

    pub async fn send(&self, method: &str, path: &str, who: &Caller) -> (StatusCode, Value) {
        self.send_json(method, path, who, None).await
    }

    pub async fn send_json(
        &self,
        method: &str,
        path: &str,
        who: &Caller,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self
            .t
            .http
            .request(method, self.t.url(path))
            .bearer_auth(&who.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Polls `GET path` until `done` holds for the body.
    pub async fn get_until(
        &self,
        path: &str,
        who: &Caller,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        eventually_some(&format!("GET {path} matches"), async || {
            let (status, body) = self.send("GET", path, who).await;
            (status == StatusCode::OK && done(&body)).then_some(body)
        })
        .await
    }

    /// Every id of the listing at `query`, following cursors to the end.
    async fn ids(&self, query: &str, who: &Caller) -> Vec<String> {
        let mut ids = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let sep = if query.contains('?') { '&' } else { '?' };
            let path = match &cursor {
                Some(c) => format!("{query}{sep}cursor={c}"),
                None => query.to_string(),
            };
            let (status, page) = self.send("GET", &path, who).await;
            assert_eq!(status, StatusCode::OK, "{path}: {page}");
            ids.extend(
                page["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| f["id"].as_str().unwrap().to_string()),
            );
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => return ids,
            }
        }
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

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn paging_is_complete_and_stable_while_files_are_added() {
    let w = World::new(&[]).await;
    let mut made = Vec::new();
    for i in 0..25 {
        made.push(
            w.create(&w.admin, &format!("file {i:02}"))
                .await
                .to_string(),
        );
    }
    w.settled().await;
    // Newest first: the reverse of creation order (ids are time-ordered too).
    let expected: Vec<String> = made.iter().rev().cloned().collect();

    let mut seen = Vec::new();
    let (_, mut page) = w.send("GET", "/v1/files?limit=10", &w.admin).await;
    let mut pages = 1;
    loop {
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["id"].as_str().unwrap().to_string()),
        );
        // Files added between pages sort before the cursor: never seen, never shifting.
        w.create(&w.admin, &format!("late {pages}")).await;
        w.settled().await;
        let Some(cursor) = page["next_cursor"].as_str() else {
            break;
        };
        let (status, next) = w
            .send(
                "GET",
                &format!("/v1/files?limit=10&cursor={cursor}"),
                &w.admin,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        page = next;
        pages += 1;
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, expected, "every file exactly once, newest first");
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), 25);

    // The default page is 50; the three late files now lead the listing.
    let all = w.ids("/v1/files", &w.admin).await;
    assert_eq!(all.len(), 28);
    assert_eq!(&all[3..], &expected[..]);
    let (_, page) = w.send("GET", "/v1/files", &w.admin).await;
    assert!(page["next_cursor"].is_null());
    t_stop(w).await;
}

async fn t_stop(w: World) {
    w.t.app.stop().await;
}

#[tokio::test]
async fn every_filter_narrows_the_listing() {
    let w = World::new(&[]).await;
    let a = &w.admin;
    let report = w.create(a, "Report 2024.pdf").await;
    w.complete(report, 1, "r1").await;
    w.run(
        report,
        FileCommand::Tag {
            tag: "finance".into(),
        },
    )
    .await;
    let draft = w.create(a, "report_draft").await;
    w.run(draft, upload("d1")).await; // latest version still `uploaded`
    let lookalike = w.create(a, "reportXdraft").await;
    let percent = w.create(a, "50%_off").await;
    let fifty = w.create(a, "50 x").await;
    let gone = w.create(a, "Report old").await;
    w.run(
        gone,
        FileCommand::Tag {
            tag: "finance".into(),
        },
    )
    .await;
    w.run(gone, FileCommand::Delete).await;
    w.settled().await;

    let set = |v: Vec<String>| v.into_iter().collect::<HashSet<_>>();
    let ids = |v: &[Uuid]| v.iter().map(Uuid::to_string).collect::<HashSet<_>>();
    assert_eq!(
        set(w.ids("/v1/files", a).await),
        ids(&[report, draft, lookalike, percent, fifty])
    );
    // Case-insensitive prefix; `_` and `%` are literal.
    assert_eq!(
        set(w.ids("/v1/files?name=REP", a).await),
        ids(&[report, draft, lookalike])
    );
    assert_eq!(set(w.ids("/v1/files?name=report_", a).await), ids(&[draft]));
    assert_eq!(set(w.ids("/v1/files?name=50%25", a).await), ids(&[percent]));
    assert_eq!(set(w.ids("/v1/files?name=zzz", a).await), ids(&[]));
    // Status of the latest version.
    assert_eq!(
        set(w.ids("/v1/files?status=completed", a).await),
        ids(&[report])
    );
    assert_eq!(
        set(w.ids("/v1/files?status=uploaded", a).await),
        ids(&[draft])
    );
    assert_eq!(set(w.ids("/v1/files?status=failed", a).await), ids(&[]));
    // Tags: the deleted file's tag does not bring it back into the live listing.
    assert_eq!(set(w.ids("/v1/files?tag=finance", a).await), ids(&[report]));
    // The trash holds only deleted files, and filters apply there too.
    assert_eq!(set(w.ids("/v1/files?deleted=true", a).await), ids(&[gone]));
    assert_eq!(
        set(w
            .ids("/v1/files?deleted=true&tag=finance&name=report", a)
            .await),
        ids(&[gone])
    );
    assert_eq!(
        set(w.ids("/v1/files?deleted=false&name=50", a).await),
        ids(&[percent, fifty])
    );

    let (_, page) = w.send("GET", "/v1/files?name=Report%202024", a).await;
    let file = &page["items"][0];
    assert_eq!(file["current_version"]["version_number"], 1);
    assert_eq!(file["current_version"]["sha256"], sha("r1"));
    assert_eq!(file["latest_version"]["status"], "completed");
    assert_eq!(file["tags"], json!(["finance"]));
    // Tag counts exclude deleted files.
    let (_, tags) = w.send("GET", "/v1/tags", a).await;
    assert_eq!(tags, json!([{"name": "finance", "file_count": 1}]));
    t_stop(w).await;
}

#[tokio::test]
async fn malformed_queries_are_refused_with_400() {
    let w = World::new(&[]).await;
    for _ in 0..3 {
        w.create(&w.admin, "f").await;
    }
    w.settled().await;
    let (_, page) = w.send("GET", "/v1/files?limit=1", &w.admin).await;
    let cursor = page["next_cursor"].as_str().unwrap().to_string();
    // One character of the payload changed: still base64, still well-formed.
    let tampered: String = cursor
        .char_indices()
        .map(|(i, c)| match (i, c) {
            (5, 'A') => 'B',
            (5, _) => 'A',
            _ => c,
        })
        .collect();
    for query in [
        "limit=0".to_string(),
        "limit=201".into(),
        "limit=ten".into(),
        "limit=-1".into(),
        "cursor=garbage!".into(),
        format!("cursor={tampered}"),
        "cursor=MTIzOmFiYw".into(), // base64 of "123:abc"
        "status=done".into(),
        "deleted=maybe".into(),
        format!("name={}", "a".repeat(256)),
    ] {
        let (status, body) = w.send("GET", &format!("/v1/files?{query}"), &w.admin).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::BAD_REQUEST, "bad_request"),
            "{query}: {body}"
        );
    }
    let (status, page) = w.send("GET", "/v1/files?limit=200", &w.admin).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["items"].as_array().unwrap().len(), 3);
    t_stop(w).await;
}

#[tokio::test]
async fn commands_round_trip_and_refuse_bad_input() {
    let w = World::new(&[]).await;
    let a = &w.admin;
    let id = w.create(a, "draft").await;
    w.complete(id, 1, "one").await;
    w.complete(id, 2, "two").await;
    let path = format!("/v1/files/{id}");

    // Rename: the response is the new state, and GET shows exactly that once projected.
    let (status, renamed) = w
        .send_json("PATCH", &path, a, Some(json!({"display_name": "final"})))
        .await;
    assert_eq!(status, StatusCode::OK, "{renamed}");
    assert_eq!(renamed["display_name"], "final");
    let got = w
        .get_until(&path, a, |f| f["display_name"] == "final")
        .await;
    assert_eq!(got, renamed, "command response == projected view");

    // Tags.
    let (status, tagged) = w.send("PUT", &format!("{path}/tags/q3"), a).await;
    assert_eq!((status, &tagged["tags"]), (StatusCode::OK, &json!(["q3"])));
    let (_, again) = w.send("PUT", &format!("{path}/tags/a.b-c_d"), a).await;
    assert_eq!(again["tags"], json!(["a.b-c_d", "q3"]));
    w.get_until("/v1/tags", a, |t| t.as_array().unwrap().len() == 2)
        .await;
    let (status, untagged) = w.send("DELETE", &format!("{path}/tags/q3"), a).await;
    assert_eq!(
        (status, &untagged["tags"]),
        (StatusCode::OK, &json!(["a.b-c_d"]))
    );
    let (status, _) = w.send("DELETE", &format!("{path}/tags/never-had"), a).await;
    assert_eq!(status, StatusCode::OK, "untagging a missing tag is a no-op");
    w.get_until(&path, a, |f| f["tags"] == json!(["a.b-c_d"]))
        .await;

    // Version restore: a new current version with the old bytes.
    let (status, restored) = w
        .send("POST", &format!("{path}/versions/1/restore"), a)
        .await;
    assert_eq!(status, StatusCode::OK, "{restored}");
    assert_eq!(restored["current_version"]["version_number"], 3);
    assert_eq!(restored["current_version"]["sha256"], sha("one"));
    assert_eq!(
        restored["latest_version"],
        json!({"version_number": 3, "status": "completed"})
    );
    let versions = w
        .get_until(&format!("{path}/versions"), a, |v| {
            v.as_array().unwrap().len() == 3
        })
        .await;
    assert_eq!(versions[2]["restored_from_version"], 1);
    assert_eq!(versions[0]["status"], "completed");
    assert_eq!(versions[1]["sha256"], sha("two"));
    assert!(
        versions[0].get("storage_key").is_none(),
        "no internal paths: {versions}"
    );
    let (status, body) = w
        .send("POST", &format!("{path}/versions/9/restore"), a)
        .await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    w.run(id, upload("four")).await; // version 4, still `uploaded`
    let (status, body) = w
        .send("POST", &format!("{path}/versions/4/restore"), a)
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
    );

    // Validation.
    for bad in [
        json!({"display_name": ""}),
        json!({"display_name": "x".repeat(256)}),
        json!({"name": "x"}),
    ] {
        let (status, body) = w.send_json("PATCH", &path, a, Some(bad.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
    }
    // A control character breaks the text rule (docs/errors.md): refused at the edge.
    let bad = json!({"display_name": "a\u{7}b"});
    let (status, body) = w.send_json("PATCH", &path, a, Some(bad)).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "bad_request")
    );
    let (status, body) = w.send("PUT", &format!("{path}/tags/no%20spaces"), a).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
    );
    let (status, body) = w.send("POST", &format!("{path}/restore"), a).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        "not deleted"
    );

    // Soft delete, idempotently; a deleted file refuses changes but can be restored.
    let (status, deleted) = w.send("DELETE", &path, a).await;
    assert_eq!(
        (status, &deleted["is_deleted"]),
        (StatusCode::OK, &json!(true))
    );
    assert!(deleted["deleted_at"].is_string());
    let (status, again) = w.send("DELETE", &path, a).await;
    assert_eq!(
        (status, &again["deleted_at"]),
        (StatusCode::OK, &deleted["deleted_at"])
    );
    let (status, _) = w
        .send_json("PATCH", &path, a, Some(json!({"display_name": "nope"})))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let got = w.get_until(&path, a, |f| f["is_deleted"] == true).await;
    assert_eq!(got, again);
    w.get_until("/v1/files?deleted=true", a, |p| {
        p["items"].as_array().unwrap().len() == 1
    })
    .await;
    let (status, back) = w.send("POST", &format!("{path}/restore"), a).await;
    assert_eq!(
        (status, &back["is_deleted"], &back["deleted_at"]),
        (StatusCode::OK, &json!(false), &Value::Null)
    );
    w.get_until("/v1/files", a, |p| {
        p["items"].as_array().unwrap().len() == 1
    })
    .await;

    // Purge (tests/integration/purge.rs covers it); a malformed id names no file.
    let (status, _) = w.send("DELETE", &format!("{path}?purge=true"), a).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = w.send("GET", "/v1/files/not-a-uuid", a).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    let (status, _) = w
        .send("POST", &format!("{path}/versions/abc/restore"), a)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = w
        .send("GET", &format!("/v1/files/{}", Uuid::now_v7()), a)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    t_stop(w).await;
}

#[tokio::test]
async fn owners_admins_and_auditors_see_and_change_what_their_role_allows() {
    let w = World::new(&[]).await;
    let alice = w.join("alice", "user").await;
    let bob = w.join("bob", "user").await;
    let audrey = w.join("audrey", "auditor").await;
    let file = w.create(&alice, "alice's").await;
    w.run(
        file,
        FileCommand::Tag {
            tag: "private".into(),
        },
    )
    .await;
    let bobs = w.create(&bob, "bob's").await;
    w.settled().await;
    let path = format!("/v1/files/{file}");
    let rename = |name: &str| Some(json!({"display_name": name}));

    // The owner sees and changes it.
    assert_eq!(w.send("GET", &path, &alice).await.0, StatusCode::OK);
    assert_eq!(
        w.send_json("PATCH", &path, &alice, rename("mine")).await.0,
        StatusCode::OK
    );
    assert_eq!(w.ids("/v1/files", &alice).await, vec![file.to_string()]);
    let (_, tags) = w.send("GET", "/v1/tags", &alice).await;
    assert_eq!(tags, json!([{"name": "private", "file_count": 1}]));

    // Another user: as if it did not exist, for reads and writes alike.
    for (method, p) in [
        ("GET", path.clone()),
        ("GET", format!("{path}/versions")),
        ("DELETE", path.clone()),
        ("PUT", format!("{path}/tags/x")),
        ("POST", format!("{path}/restore")),
        ("POST", format!("{path}/versions/1/restore")),
    ] {
        let (status, body) = w.send(method, &p, &bob).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::NOT_FOUND, "not_found"),
            "{method} {p}"
        );
    }
    assert_eq!(
        w.send_json("PATCH", &path, &bob, rename("theirs")).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(w.ids("/v1/files", &bob).await, vec![bobs.to_string()]);
    let (_, tags) = w.send("GET", "/v1/tags", &bob).await;
    assert_eq!(tags, json!([]), "other users' tags are not revealed");

    // The auditor reads everything and changes nothing (403: it may know the file).
    assert_eq!(w.send("GET", &path, &audrey).await.0, StatusCode::OK);
    assert_eq!(
        w.send("GET", &format!("{path}/versions"), &audrey).await.0,
        StatusCode::OK
    );
    assert_eq!(w.ids("/v1/files", &audrey).await.len(), 2);
    for (method, p) in [
        ("DELETE", path.clone()),
        ("PUT", format!("{path}/tags/x")),
        ("DELETE", format!("{path}/tags/private")),
    ] {
        let (status, body) = w.send(method, &p, &audrey).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::FORBIDDEN, "forbidden"),
            "{method} {p}"
        );
    }
    assert_eq!(
        w.send_json("PATCH", &path, &audrey, rename("audited"))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    let (_, tags) = w.send("GET", "/v1/tags", &audrey).await;
    assert_eq!(tags, json!([{"name": "private", "file_count": 1}]));

    // The admin sees and changes every file of the tenant.
    assert_eq!(w.ids("/v1/files", &w.admin).await.len(), 2);
    let (status, renamed) = w
        .send_json("PATCH", &path, &w.admin, rename("by admin"))
        .await;
    assert_eq!(
        (status, &renamed["owner_id"]),
        (StatusCode::OK, &json!(alice.id))
    );
    w.get_until(&path, &alice, |f| f["display_name"] == "by admin")
        .await;
    t_stop(w).await;
}

#[tokio::test]
async fn another_tenant_cannot_reach_or_count_the_files() {
    let w = World::new(&[]).await;
    let file = w.create(&w.admin, "secret plan").await;
    w.run(
        file,
        FileCommand::Tag {
            tag: "secret".into(),
        },
    )
    .await;
    w.settled().await;
    let path = format!("/v1/files/{file}");
    w.get_until(&path, &w.admin, |_| true).await; // cached now, too
    let (_, eve) = tenant(&w.t, "eve").await;
    for (method, p) in [
        ("GET", path.clone()),
        ("GET", format!("{path}/versions")),
        ("DELETE", path.clone()),
        ("PUT", format!("{path}/tags/x")),
        ("POST", format!("{path}/restore")),
    ] {
        let (status, body) = w.send(method, &p, &eve).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::NOT_FOUND, "not_found"),
            "{method} {p}"
        );
    }
    assert_eq!(
        w.send_json("PATCH", &path, &eve, Some(json!({"display_name": "mine"})))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert!(w.ids("/v1/files", &eve).await.is_empty());
    assert!(w.ids("/v1/files?name=secret", &eve).await.is_empty());
    assert_eq!(w.send("GET", "/v1/tags", &eve).await.1, json!([]));
    // Nothing changed for the owner.
    let (_, f) = w.send("GET", &path, &w.admin).await;
    assert_eq!(f["display_name"], "secret plan");
    t_stop(w).await;
}

#[tokio::test]
async fn every_files_route_is_in_the_openapi_document() {
    let t = app(&[]).await;
    let doc: Value = t
        .http
        .get(t.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for (path, method) in [
        ("/v1/files", "get"),
        ("/v1/files/{id}", "get"),
        ("/v1/files/{id}", "patch"),
        ("/v1/files/{id}", "delete"),
        ("/v1/files/{id}/versions", "get"),
        ("/v1/files/{id}/tags/{tag}", "put"),
        ("/v1/files/{id}/tags/{tag}", "delete"),
        ("/v1/files/{id}/restore", "post"),
        ("/v1/files/{id}/versions/{n}/restore", "post"),
        ("/v1/tags", "get"),
    ] {
        assert!(
            doc["paths"][path].get(method).is_some(),
            "{method} {path} missing from OpenAPI"
        );
    }
    t.app.stop().await;
}
