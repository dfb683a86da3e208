//! `GET /v1/files` answers remembered per instance under the tenant's listing epoch
//! (src/cache/listing.rs, docs/listing-cache.md): with both instances' memory warm, a
//! change is in the very next listing on the instance that made it and on another one;
//! a change nobody announced is not (so the memory really answers), until the next
//! announcement.

use chronicle::app::{App, Mode};
use chronicle::cache::listing;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{Caller, SECRET, World, counter};
use crate::common::{TempDir, eventually, test_config};

/// A second API instance (no projectors) on the world's database, Redis key prefix and
/// token secret.
struct Second {
    app: App,
    base: String,
    _dir: TempDir,
}

impl Second {
    async fn start(w: &World) -> Second {
        let dir = TempDir::new();
        let prefix = w.t.app.state.config.redis_key_prefix.clone();
        let config = test_config(
            &w.t.db.url,
            &dir.0,
            &[
                ("JWT_SECRET", SECRET),
                ("REDIS_KEY_PREFIX", prefix.as_str()),
                ("RATE_LIMIT_PER_MINUTE", "1000000"),
            ],
        );
        let app = App::start(config, Mode::Web).await.unwrap();
        let base = format!("http://{}", app.addr.unwrap());
        Second {
            app,
            base,
            _dir: dir,
        }
    }
}

/// `GET query` on the instance at `base`: the listed files' (display name, tags),
/// newest first.
async fn listing(w: &World, base: &str, who: &Caller, query: &str) -> Vec<(String, Value)> {
    let r =
        w.t.http
            .get(format!("{base}{query}"))
            .bearer_auth(&who.token)
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{query}");
    let page: Value = r.json().await.unwrap();
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let status = &f["latest_version"]["status"];
            let name = format!("{}{}", f["display_name"].as_str().unwrap(), {
                if status.is_null() {
                    String::new()
                } else {
                    format!(" ({})", status.as_str().unwrap())
                }
            });
            (name, f["tags"].clone())
        })
        .collect()
}

fn names(listed: &[(String, Value)]) -> Vec<&str> {
    listed.iter().map(|(n, _)| n.as_str()).collect()
}

/// Both instances answer `query` for `who` from memory (a request is answered with a
/// hit). What a change must then get past. Polled: right after the projector's
/// checkpoint, its batch's end may still be on its way, and until then every listing
/// of the tenant reads the table.
async fn warm(w: &World, b: &Second, who: &Caller, query: &str) {
    for base in [w.t.base.as_str(), b.base.as_str()] {
        eventually(&format!("{base}{query} answered from memory"), async || {
            let before = counter(&w.t.http, base, "listing_cache_hits").await;
            listing(w, base, who, query).await;
            counter(&w.t.http, base, "listing_cache_hits").await > before
        })
        .await;
    }
}

/// The listing at `query` for `who`, which must be the same on both instances.
async fn on_both(w: &World, b: &Second, who: &Caller, query: &str) -> Vec<(String, Value)> {
    let on_a = listing(w, &w.t.base, who, query).await;
    let on_b = listing(w, &b.base, who, query).await;
    assert_eq!(on_a, on_b, "{query}: both instances answer alike");
    on_a
}

#[tokio::test]
async fn every_change_is_in_the_very_next_listing_on_every_instance() {
    let w = World::new(&[]).await;
    let bob = w.join("bob", "user").await;
    let report = w.create(&w.admin, "report").await;
    let notes = w.create(&bob, "notes").await;
    w.settled().await;
    let b = Second::start(&w).await;
    let all = "/v1/files?limit=20";
    let shared = "/v1/files?limit=20&shared_with_me=true";
    let trash = "/v1/files?limit=20&deleted=true";
    let admin = &w.admin;
    let file = |id: Uuid| format!("/v1/files/{id}");

    // The upload of a version moves to `completed`.
    warm(&w, &b, admin, all).await;
    w.complete(report, 1, "quarterly").await;
    w.settled().await;
    assert_eq!(
        names(&on_both(&w, &b, admin, all).await),
        ["notes", "report (completed)"]
    );

    // A new file.
    warm(&w, &b, admin, all).await;
    let late = w.create(admin, "late").await;
    w.settled().await;
    assert_eq!(
        names(&on_both(&w, &b, admin, all).await),
        ["late", "notes", "report (completed)"]
    );

    // A rename, made through the API of instance a.
    warm(&w, &b, admin, all).await;
    let rename = Some(json!({"display_name": "final report"}));
    let (status, _) = w.send_json("PATCH", &file(report), admin, rename).await;
    assert_eq!(status, StatusCode::OK);
    w.settled().await;
    assert_eq!(
        names(&on_both(&w, &b, admin, all).await),
        ["late", "notes", "final report (completed)"]
    );

    // A tag.
    warm(&w, &b, admin, all).await;
    let (status, _) = w
        .send("PUT", &format!("{}/tags/q3", file(late)), admin)
        .await;
    assert_eq!(status, StatusCode::OK);
    w.settled().await;
    assert_eq!(on_both(&w, &b, admin, all).await[0].1, json!(["q3"]));

    // Trash, then restore: out of the live listing into the trash, and back.
    warm(&w, &b, admin, all).await;
    warm(&w, &b, admin, trash).await;
    let (status, body) = w.send("DELETE", &file(late), admin).await;
    assert!(status.is_success(), "{status} {body}");
    w.settled().await;
    assert_eq!(
        names(&on_both(&w, &b, admin, all).await),
        ["notes", "final report (completed)"]
    );
    assert_eq!(names(&on_both(&w, &b, admin, trash).await), ["late"]);
    warm(&w, &b, admin, all).await;
    warm(&w, &b, admin, trash).await;
    let restore = format!("{}/restore", file(late));
    let (status, body) = w.send("POST", &restore, admin).await;
    assert!(status.is_success(), "{status} {body}");
    w.settled().await;
    assert_eq!(on_both(&w, &b, admin, all).await.len(), 3);
    assert!(on_both(&w, &b, admin, trash).await.is_empty());

    // Share with bob, then unshare: his "shared with me" listing follows.
    warm(&w, &b, &bob, shared).await;
    let grant = format!("{}/grants/users/{}", file(report), bob.id);
    let viewer = Some(json!({"access": "viewer"}));
    let (status, body) = w.send_json("PUT", &grant, admin, viewer).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    w.settled().await;
    assert_eq!(
        names(&on_both(&w, &b, &bob, shared).await),
        ["final report (completed)"]
    );
    warm(&w, &b, &bob, shared).await;
    let (status, body) = w.send("DELETE", &grant, admin).await;
    assert!(status.is_success(), "{status} {body}");
    w.settled().await;
    assert!(on_both(&w, &b, &bob, shared).await.is_empty());

    // A legal hold changes no column but the file's `updated_at`; the listing shows it.
    warm(&w, &b, admin, all).await;
    let before = listing_json(&w, &b.base, admin, all).await;
    let hold = Some(json!({"reason": "audit"}));
    let (status, body) = w
        .send_json("PUT", &format!("{}/hold", file(notes)), admin, hold)
        .await;
    assert!(status.is_success(), "{status} {body}");
    w.settled().await;
    on_both(&w, &b, admin, all).await;
    let after = listing_json(&w, &b.base, admin, all).await;
    assert_ne!(before, after, "the held file's updated_at moved");

    // A role change: bob, a user, sees his own file; made an admin, every file, on the
    // very next request (no projection involved: his role is part of the key).
    warm(&w, &b, &bob, all).await;
    assert_eq!(names(&on_both(&w, &b, &bob, all).await), ["notes"]);
    let r =
        w.t.http
            .put(w.t.url(&format!("/v1/users/{}/role", bob.id)))
            .bearer_auth(&admin.token)
            .json(&json!({"role": "admin"}))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(on_both(&w, &b, &bob, all).await.len(), 3);

    b.app.stop().await;
    w.t.app.stop().await;
}

/// The whole page as JSON on the instance at `base`.
async fn listing_json(w: &World, base: &str, who: &Caller, query: &str) -> Value {
    let r =
        w.t.http
            .get(format!("{base}{query}"))
            .bearer_auth(&who.token)
            .send()
            .await
            .unwrap();
    r.json().await.unwrap()
}

#[tokio::test]
async fn memory_is_served_only_under_the_epoch_it_was_read_under() {
    let w = World::new(&[]).await;
    let file = w.create(&w.admin, "original").await;
    w.settled().await;
    let b = Second::start(&w).await;
    let all = "/v1/files?limit=20";
    warm(&w, &b, &w.admin, all).await;

    // A write to the read table that no projector announced (what a projector without
    // the announcement would do) is not seen: both instances answer from memory.
    sqlx::query("UPDATE files SET display_name = 'unannounced' WHERE id = $1")
        .bind(file)
        .execute(&w.t.db.owner)
        .await
        .unwrap();
    assert_eq!(
        names(&on_both(&w, &b, &w.admin, all).await),
        ["original"],
        "answered from memory"
    );

    // The next announced change of the tenant (here: its begin and end alone) makes
    // every instance read the table again.
    let epochs = listing::epochs(
        w.t.app.state.redis_conn.clone(),
        &w.t.app.state.config.redis_key_prefix,
    );
    epochs.begin_changes(&[w.tenant]).await.unwrap();
    // While it is pending, nothing is served from memory and nothing remembered.
    let hits_before = counter(&w.t.http, &b.base, "listing_cache_hits").await;
    assert_eq!(
        names(&on_both(&w, &b, &w.admin, all).await),
        ["unannounced"]
    );
    assert_eq!(
        names(&on_both(&w, &b, &w.admin, all).await),
        ["unannounced"]
    );
    assert_eq!(
        counter(&w.t.http, &b.base, "listing_cache_hits").await,
        hits_before,
        "no hit while pending"
    );
    epochs.end_changes(&[w.tenant]).await;
    sqlx::query("UPDATE files SET display_name = 'unannounced again' WHERE id = $1")
        .bind(file)
        .execute(&w.t.db.owner)
        .await
        .unwrap();
    assert_eq!(
        names(&on_both(&w, &b, &w.admin, all).await),
        ["unannounced again"],
        "the epoch moved at the end: the first read after it is the table's"
    );

    b.app.stop().await;
    w.t.app.stop().await;
}

/// `GET /v1/files/{id}` on the instance at `base`: the status and the body.
async fn file_on(w: &World, base: &str, who: &Caller, id: Uuid) -> (StatusCode, Value) {
    let r =
        w.t.http
            .get(format!("{base}/v1/files/{id}"))
            .bearer_auth(&who.token)
            .send()
            .await
            .unwrap();
    (r.status(), r.json().await.unwrap())
}

/// Both instances answer the file from memory for `who`.
async fn warm_file(w: &World, b: &Second, who: &Caller, id: Uuid) {
    for base in [w.t.base.as_str(), b.base.as_str()] {
        eventually(
            &format!("{base}: file {id} answered from memory"),
            async || {
                let before = counter(&w.t.http, base, "file_memory_hits").await;
                assert_eq!(file_on(w, base, who, id).await.0, StatusCode::OK);
                counter(&w.t.http, base, "file_memory_hits").await > before
            },
        )
        .await;
    }
}

/// The file's display name and tags, which must be the same on both instances.
async fn file_on_both(w: &World, b: &Second, who: &Caller, id: Uuid) -> (String, Value) {
    let (status_a, on_a) = file_on(w, &w.t.base, who, id).await;
    let (status_b, on_b) = file_on(w, &b.base, who, id).await;
    assert_eq!((status_a, status_b), (StatusCode::OK, StatusCode::OK));
    assert_eq!(on_a, on_b, "both instances answer alike");
    let name = on_a["display_name"].as_str().unwrap().to_string();
    (name, on_a["tags"].clone())
}

#[tokio::test]
async fn a_file_read_from_memory_shows_every_change_at_once_and_only_to_who_may_see_it() {
    let w = World::new(&[]).await;
    let bob = w.join("bob", "user").await;
    let report = w.create(&w.admin, "report").await;
    w.settled().await;
    let b = Second::start(&w).await;
    let admin = &w.admin;
    let path = format!("/v1/files/{report}");

    // A rename through instance a: the very next read on either instance shows it.
    warm_file(&w, &b, admin, report).await;
    let rename = Some(json!({"display_name": "final report"}));
    let (status, _) = w.send_json("PATCH", &path, admin, rename).await;
    assert_eq!(status, StatusCode::OK);
    w.settled().await;
    assert_eq!(file_on_both(&w, &b, admin, report).await.0, "final report");

    // A tag, likewise.
    warm_file(&w, &b, admin, report).await;
    let (status, _) = w.send("PUT", &format!("{path}/tags/q3"), admin).await;
    assert_eq!(status, StatusCode::OK);
    w.settled().await;
    assert_eq!(file_on_both(&w, &b, admin, report).await.1, json!(["q3"]));

    // Remembered for the admin, the body is still refused to bob, who may not see it:
    // the policy decides every answer, remembered or not.
    warm_file(&w, &b, admin, report).await;
    for base in [w.t.base.as_str(), b.base.as_str()] {
        let before = counter(&w.t.http, base, "file_memory_hits").await;
        let (status, body) = file_on(&w, base, &bob, report).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert_eq!(
            counter(&w.t.http, base, "file_memory_hits").await,
            before + 1,
            "refused on a remembered body"
        );
    }

    // A write nobody announced is not seen (the memory really answers) …
    sqlx::query("UPDATE files SET display_name = 'unannounced' WHERE id = $1")
        .bind(report)
        .execute(&w.t.db.owner)
        .await
        .unwrap();
    assert_eq!(file_on_both(&w, &b, admin, report).await.0, "final report");
    // … until the tenant's next announced change, on every instance (made as the files
    // projector makes one: the file's Redis entry deleted before the change ends).
    let (redis, prefix) = (
        w.t.app.state.redis_conn.clone(),
        w.t.app.state.config.redis_key_prefix.clone(),
    );
    let epochs = listing::epochs(redis.clone(), &prefix);
    epochs.begin_changes(&[w.tenant]).await.unwrap();
    chronicle::cache::invalidate_files(&redis, &prefix, &[(w.tenant, report)]).await;
    epochs.end_changes(&[w.tenant]).await;
    assert_eq!(file_on_both(&w, &b, admin, report).await.0, "unannounced");

    b.app.stop().await;
    w.t.app.stop().await;
}
