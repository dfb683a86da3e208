//! Sharing (docs/sharing.md) through the API against the real services: grants, links,
//! legal holds and the retention lock, bulk commands. Uploads go through the API and a
//! real worker, so downloads serve real bytes.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Client, browser_available, browser_dir, bytes_of, eventually};
use crate::files_api::{Caller, World};

async fn world(extra: &[(&str, &str)]) -> World {
    let mut vars = vec![
        ("WORKER_CONCURRENCY", "2"),
        ("BLOB_GC_EVERY_SECS", "1"),
        ("BLOB_GC_GRACE_SECS", "0"),
    ];
    vars.extend_from_slice(extra);
    World::new(&vars).await
}

/// A completed upload of `bytes` by `who`; its file id.
async fn uploaded(w: &World, who: &Caller, name: &str, bytes: &[u8]) -> String {
    let client = Client {
        token: who.token.clone(),
        tenant_id: w.tenant.to_string(),
        user_id: who.id.to_string(),
    };
    let accepted = w.t.upload_ok(&client, name, bytes.to_vec()).await;
    let id = accepted["file_id"].as_str().unwrap().to_string();
    assert_eq!(w.t.settled_status(&id, 1).await, "completed");
    id
}

/// `GET path` without any `Authorization` header: status, headers and bytes.
async fn anonymous(
    w: &World,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let mut req = w.t.http.get(w.t.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    let (status, h) = (r.status(), r.headers().clone());
    (status, h, r.bytes().await.unwrap().to_vec())
}

async fn bytes_as(w: &World, path: &str, who: &Caller) -> (StatusCode, Vec<u8>) {
    let r =
        w.t.http
            .get(w.t.url(path))
            .bearer_auth(&who.token)
            .send()
            .await
            .unwrap();
    let status = r.status();
    (status, r.bytes().await.unwrap().to_vec())
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

async fn event_types(w: &World, id: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT event_type FROM events WHERE aggregate_id = $1 ORDER BY sequence")
        .bind(id)
        .fetch_all(&w.t.db.owner)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_grantee_reads_and_downloads_and_loses_access_on_the_next_request() {
    let w = world(&[]).await;
    let bob = w.join("bob", "user").await;
    let carol = w.join("carol", "user").await;
    let bytes = bytes_of(5, 40_000);
    let id = uploaded(&w, &bob, "plan.bin", &bytes).await;
    let file = format!("/v1/files/{id}");

    // Not shared: carol cannot tell the file exists.
    for path in [
        file.clone(),
        format!("{file}/content"),
        format!("{file}/versions"),
    ] {
        assert_eq!(
            w.send("GET", &path, &carol).await.0,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    // Only the owner (or an admin) shares; a viewer grant reads everything.
    let grant = |access: &str| Some(json!({ "access": access }));
    let carol_grant = format!("{file}/grants/users/{}", carol.id);
    let (status, body) = w
        .send_json("PUT", &carol_grant, &bob, grant("viewer"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["grants"][0]["access"], "viewer");
    let (status, body) = w.send_json("PUT", &carol_grant, &bob, grant("owner")).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
    );
    assert_eq!(w.send("GET", &file, &carol).await.0, StatusCode::OK);
    assert_eq!(
        w.send("GET", &format!("{file}/versions"), &carol).await.0,
        StatusCode::OK
    );
    assert_eq!(
        bytes_as(&w, &format!("{file}/content"), &carol).await,
        (StatusCode::OK, bytes.clone())
    );
    assert_eq!(
        bytes_as(&w, &format!("{file}/versions/1/content"), &carol).await,
        (StatusCode::OK, bytes.clone())
    );
    // A viewer may read but not change, share, or delete: 403, not 404 (it sees the file).
    let rename = Some(json!({ "display_name": "mine now" }));
    assert_eq!(
        w.send_json("PATCH", &file, &carol, rename.clone()).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        w.send("DELETE", &file, &carol).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        w.send_json(
            "PUT",
            &format!("{file}/grants/users/{}", carol.id),
            &carol,
            grant("editor")
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    // Listed among the files shared with carol (the read table follows within ms).
    let listed = w
        .get_until("/v1/files?shared_with_me=true", &carol, |b| {
            b.to_string().contains(&id)
        })
        .await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    // carol is told, in her notifications (and so her live stream).
    let told = w
        .get_until("/v1/notifications", &carol, |b| {
            b.to_string().contains("file_shared")
        })
        .await;
    assert_eq!(told["items"][0]["file_id"], id.as_str(), "{told}");
    assert_eq!(told["items"][0]["details"]["access"], "viewer", "{told}");
    assert_eq!(told["items"][0]["version_number"], 1, "{told}");
    assert_eq!(told["items"][0]["status"], "completed", "{told}");
    let (_, own) = w.send("GET", "/v1/files", &carol).await;
    assert!(
        !own.to_string().contains(&id),
        "not among carol's own files"
    );

    // An editor renames (and still cannot delete).
    w.send_json("PUT", &carol_grant, &bob, grant("editor"))
        .await;
    let (status, body) = w.send_json("PATCH", &file, &carol, rename).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        w.send("DELETE", &file, &carol).await.0,
        StatusCode::FORBIDDEN
    );

    // Revoked: the very next request is refused, on every route.
    let (status, _) = w.send("DELETE", &carol_grant, &bob).await;
    assert_eq!(status, StatusCode::OK);
    for path in [
        file.clone(),
        format!("{file}/content"),
        format!("{file}/versions"),
        format!("{file}/thumbnail"),
    ] {
        assert_eq!(
            w.send("GET", &path, &carol).await.0,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    // A grant to a role reaches every holder of it.
    let (status, _) = w
        .send_json(
            "PUT",
            &format!("{file}/grants/roles/user"),
            &bob,
            grant("viewer"),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        bytes_as(&w, &format!("{file}/content"), &carol).await.0,
        StatusCode::OK
    );
    assert_eq!(
        w.send("DELETE", &format!("{file}/grants/roles/user"), &bob)
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        bytes_as(&w, &format!("{file}/content"), &carol).await.0,
        StatusCode::NOT_FOUND
    );

    // Every grant and revocation is in the file's history and the audit log.
    let types = event_types(&w, &id).await;
    assert_eq!(
        types.iter().filter(|t| *t == "FileShared").count(),
        3,
        "{types:?}"
    );
    assert_eq!(
        types.iter().filter(|t| *t == "FileUnshared").count(),
        2,
        "{types:?}"
    );
    let history = w
        .get_until(&format!("{file}/history?limit=200"), &w.admin, |b| {
            b.to_string().contains("FileUnshared")
        })
        .await;
    assert!(history.to_string().contains("FileShared"));
    w.get_until(
        &format!("/v1/audit?target_id={id}&target_type=file&action=file.shared"),
        &w.admin,
        |b| b["items"].as_array().is_some_and(|i| i.len() == 3),
    )
    .await;
    let (status, verify) = w.send("GET", "/v1/audit/verify", &w.admin).await;
    assert_eq!(status, StatusCode::OK, "{verify}");
    assert_eq!(verify["intact"], true, "{verify}");
}

#[tokio::test]
async fn another_tenant_gets_404_for_everything_including_links() {
    let w = world(&[]).await;
    let bytes = bytes_of(6, 10_000);
    let id = uploaded(&w, &w.admin, "ours.bin", &bytes).await;
    let expires = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let (status, link) = w
        .send_json(
            "POST",
            &format!("/v1/files/{id}/links"),
            &w.admin,
            Some(json!({ "expires_at": expires })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{link}");
    let link_id = link["link_id"].as_str().unwrap();

    let (_, eve) = crate::files_api::tenant(&w.t, "eve").await;
    let file = format!("/v1/files/{id}");
    for (method, path, body) in [
        ("GET", format!("{file}/grants"), None),
        ("GET", format!("{file}/links"), None),
        (
            "POST",
            format!("{file}/links"),
            Some(json!({ "expires_at": expires })),
        ),
        ("DELETE", format!("{file}/links/{link_id}"), None),
        (
            "PUT",
            format!("{file}/hold"),
            Some(json!({ "reason": "mine" })),
        ),
        ("DELETE", format!("{file}/hold"), None),
        (
            "PUT",
            format!("{file}/grants/users/{}", eve.id),
            Some(json!({ "access": "viewer" })),
        ),
        (
            "PUT",
            format!("{file}/grants/roles/admin"),
            Some(json!({ "access": "viewer" })),
        ),
    ] {
        let (status, body) = w.send_json(method, &path, &eve, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {body}");
    }
    // Sharing with a user of another tenant: that user does not exist here.
    let (status, _) = w
        .send_json(
            "PUT",
            &format!("{file}/grants/users/{}", eve.id),
            &w.admin,
            Some(json!({ "access": "viewer" })),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, bulk) = w
        .send_json(
            "POST",
            "/v1/files/bulk",
            &eve,
            Some(json!({ "action": "delete", "file_ids": [id] })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bulk["results"][0]["status"], 404, "{bulk}");
}

#[tokio::test]
async fn a_link_works_without_a_header_and_stops_at_its_limit_expiry_and_revocation() {
    let w = world(&[]).await;
    let bob = w.join("bob", "user").await;
    let bytes = bytes_of(8, 30_000);
    let id = uploaded(&w, &bob, "photo.bin", &bytes).await;
    let links = format!("/v1/files/{id}/links");
    let in_an_hour = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();

    // Validation: expiry required and in the future, limit at least 1.
    for body in [
        json!({}),
        json!({ "expires_at": "2001-01-01T00:00:00Z" }),
        json!({ "expires_at": in_an_hour, "max_downloads": 0 }),
        json!({ "expires_at": in_an_hour, "version_number": 9 }),
    ] {
        let (status, answer) = w.send_json("POST", &links, &bob, Some(body.clone())).await;
        assert!(status.is_client_error(), "{body} → {status} {answer}");
    }

    let (status, link) = w
        .send_json(
            "POST",
            &links,
            &bob,
            Some(json!({ "expires_at": in_an_hour, "max_downloads": 3 })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{link}");
    let url = link["url"].as_str().unwrap().to_string();
    assert!(!url.contains(&id), "the URL reveals nothing about the file");

    // The same bytes and ETag as /content, Range included, without Authorization.
    let r =
        w.t.http
            .get(w.t.url(&format!("/v1/files/{id}/content")))
            .bearer_auth(&bob.token)
            .send()
            .await
            .unwrap();
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let (status, headers, body) = anonymous(&w, &url, &[]).await;
    assert_eq!((status, body), (StatusCode::OK, bytes.clone()));
    assert_eq!(headers["etag"].to_str().unwrap(), etag);
    let (status, headers, body) = anonymous(&w, &url, &[("range", "bytes=10-19")]).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(body, bytes[10..20].to_vec());
    assert!(headers.get("content-range").is_some());
    let (status, _, _) = anonymous(&w, &url, &[("if-none-match", &etag)]).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    // The limit (3) is reached: the same 404 as a link that never existed.
    let (gone_status, _, gone_body) = anonymous(&w, &url, &[]).await;
    let (never_status, _, never_body) =
        anonymous(&w, "/l/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", &[]).await;
    assert_eq!(gone_status, StatusCode::NOT_FOUND);
    assert_eq!((gone_status, gone_body), (never_status, never_body));
    let (_, listed) = w.send("GET", &links, &bob).await;
    assert_eq!(listed[0]["downloads"], 3, "{listed}");

    // Concurrent uses never exceed the limit.
    let (_, link) = w
        .send_json(
            "POST",
            &links,
            &bob,
            Some(json!({ "expires_at": in_an_hour, "max_downloads": 4 })),
        )
        .await;
    let url = link["url"].as_str().unwrap().to_string();
    let tries = (0..16).map(|_| anonymous(&w, &url, &[]));
    let served = futures::future::join_all(tries)
        .await
        .into_iter()
        .filter(|(s, _, _)| *s == StatusCode::OK)
        .count();
    assert_eq!(served, 4);

    // A password: missing or wrong is the same 404; right (query or header) serves.
    let (_, link) = w
        .send_json(
            "POST",
            &links,
            &bob,
            Some(json!({ "expires_at": in_an_hour, "password": "open sesame" })),
        )
        .await;
    let url = link["url"].as_str().unwrap().to_string();
    assert_eq!(anonymous(&w, &url, &[]).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        anonymous(&w, &format!("{url}?password=nope"), &[]).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        anonymous(&w, &format!("{url}?password=open%20sesame"), &[])
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        anonymous(&w, &url, &[("x-link-password", "open sesame")])
            .await
            .0,
        StatusCode::OK
    );

    // Revocation: the next use is 404; revoking is the owner's (or an admin's).
    let link_id = link["link_id"].as_str().unwrap();
    let carol = w.join("carol", "user").await;
    assert_eq!(
        w.send("DELETE", &format!("{links}/{link_id}"), &carol)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        w.send("DELETE", &format!("{links}/{link_id}"), &bob)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        anonymous(&w, &url, &[("x-link-password", "open sesame")])
            .await
            .0,
        StatusCode::NOT_FOUND
    );

    // Expiry.
    let soon = (chrono::Utc::now() + chrono::Duration::milliseconds(1500)).to_rfc3339();
    let (_, link) = w
        .send_json("POST", &links, &bob, Some(json!({ "expires_at": soon })))
        .await;
    let url = link["url"].as_str().unwrap().to_string();
    assert_eq!(anonymous(&w, &url, &[]).await.0, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(anonymous(&w, &url, &[]).await.0, StatusCode::NOT_FOUND);

    // Creation and revocation are events; the log never holds a token.
    let types = event_types(&w, &id).await;
    assert_eq!(
        types.iter().filter(|t| *t == "LinkCreated").count(),
        4,
        "{types:?}"
    );
    assert_eq!(
        types.iter().filter(|t| *t == "LinkRevoked").count(),
        1,
        "{types:?}"
    );
    let token = url.trim_start_matches("/l/");
    let leaked: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE payload::text LIKE '%' || $1 || '%'")
            .bind(token)
            .fetch_one(&w.t.db.owner)
            .await
            .unwrap();
    assert_eq!(leaked, 0);
}

#[tokio::test]
async fn a_held_file_cannot_be_deleted_or_purged_and_its_bytes_survive_gc_until_release() {
    let w = world(&[]).await;
    let bob = w.join("bob", "user").await;
    let auditor = w.join("audrey", "auditor").await;
    let bytes = bytes_of(11, 20_000);
    let id = uploaded(&w, &bob, "evidence.bin", &bytes).await;
    let file = format!("/v1/files/{id}");
    let hold = format!("{file}/hold");

    // Auditors and admins hold, with a reason; the owner may not.
    assert_eq!(
        w.send_json("PUT", &hold, &bob, Some(json!({ "reason": "x" })))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    let (status, body) = w
        .send_json("PUT", &hold, &auditor, Some(json!({ "reason": "  " })))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = w
        .send_json(
            "PUT",
            &hold,
            &auditor,
            Some(json!({ "reason": "case 2026-17" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["legal_hold"], "case 2026-17");

    // Refused for everyone, admins included.
    for who in [&bob, &w.admin] {
        let (status, body) = w.send("DELETE", &format!("{file}?purge=true"), who).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::CONFLICT, "legal_hold"),
            "{body}"
        );
        let (status, body) = w.send("DELETE", &file, who).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::CONFLICT, "legal_hold"),
            "{body}"
        );
    }
    let (_, bulk) = w
        .send_json(
            "POST",
            "/v1/files/bulk",
            &bob,
            Some(json!({ "action": "delete", "file_ids": [id] })),
        )
        .await;
    assert_eq!(bulk["results"][0]["status"], 409, "{bulk}");
    // GC rounds pass; the bytes stay.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        bytes_as(&w, &format!("{file}/content"), &bob).await,
        (StatusCode::OK, bytes.clone())
    );

    // Released: the owner purges, and the collector takes the bytes.
    assert_eq!(w.send("DELETE", &hold, &w.admin).await.0, StatusCode::OK);
    assert_eq!(
        w.send("DELETE", &format!("{file}?purge=true"), &bob)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    let sha = {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(&bytes))
    };
    eventually("blob collected after release and purge", async || {
        !w.t.stored_objects("blobs")
            .iter()
            .any(|k| k.ends_with(&sha))
    })
    .await;
    let types = event_types(&w, &id).await;
    for t in ["LegalHoldPlaced", "LegalHoldReleased", "Purged"] {
        assert!(types.iter().any(|e| e == t), "{t} in {types:?}");
    }
}

#[tokio::test]
async fn the_minimum_retention_refuses_a_purge_for_everyone() {
    let w = world(&[("MIN_RETENTION_DAYS", "30")]).await;
    let bytes = bytes_of(12, 5_000);
    let id = uploaded(&w, &w.admin, "young.bin", &bytes).await;
    let (status, body) = w
        .send("DELETE", &format!("/v1/files/{id}?purge=true"), &w.admin)
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::CONFLICT, "retention_locked"),
        "{body}"
    );
    // A soft delete is still allowed: the bytes stay.
    assert_eq!(
        w.send("DELETE", &format!("/v1/files/{id}"), &w.admin)
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn bulk_commands_answer_per_item() {
    let w = World::new(&[]).await;
    let bob = w.join("bob", "user").await;
    let a = w.create(&bob, "a.txt").await;
    let b = w.create(&bob, "b.txt").await;
    let admins = w.create(&w.admin, "theirs.txt").await;
    let missing = uuid::Uuid::now_v7();
    let (status, body) = w
        .send_json(
            "POST",
            "/v1/files/bulk",
            &bob,
            Some(json!({ "action": "tag", "tag": "q3", "file_ids": [a, b, admins, missing] })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let statuses: Vec<i64> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_i64().unwrap())
        .collect();
    assert_eq!(statuses, vec![200, 200, 404, 404]);
    assert_eq!(
        (body["succeeded"].as_i64(), body["failed"].as_i64()),
        (Some(2), Some(2))
    );
    let (_, body) = w
        .send_json(
            "POST",
            "/v1/files/bulk",
            &bob,
            Some(json!({ "action": "delete", "file_ids": [a, a] })),
        )
        .await;
    assert_eq!(
        body["succeeded"], 2,
        "deleting a deleted file is a success: {body}"
    );
    let (_, body) = w
        .send_json(
            "POST",
            "/v1/files/bulk",
            &bob,
            Some(json!({ "action": "restore", "file_ids": [a, b] })),
        )
        .await;
    let statuses: Vec<i64> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_i64().unwrap())
        .collect();
    assert_eq!(statuses, vec![200, 422], "b was never deleted: {body}");
    for bad in [
        json!({ "action": "shred", "file_ids": [a] }),
        json!({ "action": "tag", "file_ids": [a] }),
        json!({ "action": "delete", "file_ids": [] }),
    ] {
        let (status, _) = w
            .send_json("POST", "/v1/files/bulk", &bob, Some(bad.clone()))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
}

#[tokio::test]
async fn search_sort_tags_and_unknown_parameters() {
    let w = World::new(&[]).await;
    let names = [
        "Q3 report",
        "annual REPORT.pdf",
        "notes",
        "100%_done",
        "zebra",
    ];
    let mut ids = Vec::new();
    for name in names {
        ids.push(w.create(&w.admin, name).await.to_string());
    }
    for (i, tags) in [&["finance", "q3"][..], &["finance"], &["q3"], &[], &[]]
        .iter()
        .enumerate()
    {
        for tag in *tags {
            let (status, _) = w
                .send("PUT", &format!("/v1/files/{}/tags/{tag}", ids[i]), &w.admin)
                .await;
            assert_eq!(status, StatusCode::OK);
        }
    }
    w.settled().await;
    let names_of = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["display_name"].as_str().unwrap().to_string())
            .collect()
    };
    let get = async |q: &str| {
        let (status, body) = w.send("GET", &format!("/v1/files?{q}"), &w.admin).await;
        assert_eq!(status, StatusCode::OK, "{q}: {body}");
        body
    };
    // Substring of name or tag, case-insensitive; LIKE wildcards match themselves.
    let mut found = names_of(&get("q=report&sort=name").await);
    found.sort();
    assert_eq!(found, vec!["Q3 report", "annual REPORT.pdf"]);
    assert_eq!(
        names_of(&get("q=INAN&sort=name").await),
        vec!["annual REPORT.pdf", "Q3 report"]
    );
    assert_eq!(names_of(&get("q=%25_&sort=name").await), vec!["100%_done"]);
    assert!(names_of(&get("q=%25x").await).is_empty());
    // Tags: all (default) or any.
    assert_eq!(
        names_of(&get("tag=finance&tag=q3").await),
        vec!["Q3 report"]
    );
    // Repeated and empty values count towards the 20 but filter nothing more.
    let twenty = format!("{}&tag=&tag=finance", vec!["tag=q3"; 18].join("&"));
    assert_eq!(names_of(&get(&twenty).await), vec!["Q3 report"]);
    let mut any = names_of(&get("tag=finance&tag=q3&tag_mode=any").await);
    any.sort();
    assert_eq!(any, vec!["Q3 report", "annual REPORT.pdf", "notes"]);
    // Sorts, and paging one by one follows them exactly.
    let by_name = vec![
        "100%_done",
        "annual REPORT.pdf",
        "notes",
        "Q3 report",
        "zebra",
    ];
    assert_eq!(names_of(&get("sort=name").await), by_name);
    let mut reversed = by_name.clone();
    reversed.reverse();
    assert_eq!(names_of(&get("sort=name&order=desc").await), reversed);
    for sort in [
        "sort=name",
        "sort=name&order=desc",
        "sort=created&order=asc",
        "sort=updated",
        "sort=size",
    ] {
        let mut paged = Vec::new();
        let mut cursor = String::new();
        loop {
            let page = get(&format!("{sort}&limit=2{cursor}")).await;
            paged.extend(names_of(&page));
            match page["next_cursor"].as_str() {
                Some(c) => cursor = format!("&cursor={c}"),
                None => break,
            }
        }
        assert_eq!(paged.len(), 5, "{sort}: {paged:?}");
        if sort.starts_with("sort=name") {
            assert_eq!(paged, names_of(&get(sort).await), "{sort}");
        }
    }
    // A cursor belongs to its sort.
    let page = get("sort=name&limit=1").await;
    let cursor = page["next_cursor"].as_str().unwrap();
    let (status, _) = w
        .send(
            "GET",
            &format!("/v1/files?sort=size&limit=1&cursor={cursor}"),
            &w.admin,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Unknown or malformed parameters are refused on every listing, never ignored.
    let file = &ids[0];
    for path in [
        "/v1/files?bogus=1".to_string(),
        "/v1/files?sort=colour".to_string(),
        "/v1/files?order=sideways".to_string(),
        "/v1/files?tag_mode=some".to_string(),
        "/v1/files?limit=5&limit=6".to_string(),
        // More than 20 `tag` values, even repeated or empty ones (the document's maxItems).
        format!("/v1/files?{}", vec!["tag=q3"; 21].join("&")),
        format!("/v1/files?{}", vec!["tag="; 21].join("&")),
        "/v1/audit?q=x".to_string(),
        "/v1/notifications?sort=name".to_string(),
        "/v1/jobs?page=2".to_string(),
        "/v1/sessions?limit=1".to_string(),
        "/v1/devices?q=phone".to_string(),
        "/v1/tags?q=fin".to_string(),
        format!("/v1/files/{file}/history?sort=desc"),
    ] {
        let (status, body) = w.send("GET", &path, &w.admin).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::BAD_REQUEST, "bad_request"),
            "{path}: {body}"
        );
    }
}

#[tokio::test]
async fn a_link_works_in_a_headless_browsers_img_without_credentials() {
    if !browser_available("a_link_works_in_a_headless_browsers_img") {
        return;
    }
    let w = world(&[]).await;
    let img = image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([x as u8 * 6, y as u8 * 8, 90]));
    let mut png = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let id = uploaded(&w, &w.admin, "picture.png", &png).await;
    let in_an_hour = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let (status, link) = w
        .send_json(
            "POST",
            &format!("/v1/files/{id}/links"),
            &w.admin,
            Some(json!({ "expires_at": in_an_hour, "max_downloads": 1 })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{link}");
    let url = w.t.url(link["url"].as_str().unwrap());
    let seen = |url: String| async move {
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new("node")
                .current_dir(browser_dir())
                .args(["img.mjs", &url])
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        assert!(
            out.status.success(),
            "the browser failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    assert_eq!(
        seen(url.clone()).await,
        json!({ "loaded": true, "width": 40, "height": 30 })
    );
    // Its one download is used: the browser gets the 404, the image does not load.
    assert_eq!(seen(url).await["loaded"], false);
}
