//! Whose budget a request spends (src/api/edge/budget.rs), over real HTTP and a real Redis:
//! two users behind one IP each have their own budget; anonymous requests (and forged
//! tokens) are still limited per IP; `PATCH`/`HEAD` on one's own tus upload have their own
//! budget, while creating an upload, or touching someone else's, spends the request budget.

use reqwest::{Response, StatusCode};

use crate::files_api::World;
use crate::tus::{create, head, meta, patch};

const LIMIT: u64 = 8;

fn number(r: &Response, name: &str) -> u64 {
    r.headers()[name].to_str().unwrap().parse().unwrap()
}

async fn me(w: &World, token: &str) -> Response {
    w.t.http
        .get(w.t.url("/v1/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn authenticated_requests_spend_their_principals_budget_and_anonymous_ones_their_ips() {
    // Spent per IP so far: the admin's register + login. The invitation is the admin's.
    let w = World::new(&[
        ("RATE_LIMIT_PER_MINUTE", "8"),
        ("TUS_RATE_LIMIT_PER_MINUTE", "1000"),
    ])
    .await;
    let bob = w.join("bob", "user").await; // + bob's register + login: 4 per IP.

    // The admin spends the rest of their budget (1 went on the invitation) …
    for n in 2..=LIMIT {
        let r = me(&w, &w.admin.token).await;
        assert_eq!(r.status(), StatusCode::OK, "admin request {n}");
        assert_eq!(number(&r, "ratelimit-remaining"), LIMIT - n);
    }
    let r = me(&w, &w.admin.token).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(number(&r, "retry-after") >= 1);
    assert_eq!(number(&r, "ratelimit-limit"), LIMIT);
    assert_eq!(number(&r, "ratelimit-remaining"), 0);

    // … and Bob, same office, same address, still has all of his.
    let r = me(&w, &bob.token).await;
    assert_eq!(r.status(), StatusCode::OK, "bob has his own budget");
    assert_eq!(number(&r, "ratelimit-remaining"), LIMIT - 1);

    // Anonymous requests, and requests with a token that does not verify, share the IP's
    // budget: 4 left of 8.
    for n in 5..=LIMIT {
        let r = if n % 2 == 0 {
            w.t.http.get(w.t.url("/openapi.json")).send().await.unwrap()
        } else {
            me(&w, "forged.token.value").await
        };
        assert_ne!(r.status(), StatusCode::TOO_MANY_REQUESTS, "anonymous {n}");
        assert_eq!(number(&r, "ratelimit-remaining"), LIMIT - n);
    }
    let r = w.t.http.get(w.t.url("/openapi.json")).send().await.unwrap();
    assert_eq!(
        r.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the IP's budget is spent"
    );
    assert_eq!(
        me(&w, "forged.token.value").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(me(&w, &bob.token).await.status(), StatusCode::OK);

    // Bob's upload: creating it spends his request budget (2 of 8 so far, now 3) …
    let at = create(&w, &bob, 64, &meta(&[("filename", "a.bin")])).await;
    // … its PATCHes and HEADs do not: far more of them than the request budget allows.
    for i in 0..(2 * LIMIT) {
        let r = head(&w, &bob, &at).await;
        assert_eq!(r.status(), StatusCode::OK, "HEAD {i}");
        assert_eq!(number(&r, "ratelimit-limit"), 1000, "the uploads' budget");
        let r = patch(&w, &bob, &at, 4 * i, b"abcd").await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT, "PATCH {i}");
    }
    assert_eq!(
        number(&me(&w, &bob.token).await, "ratelimit-remaining"),
        LIMIT - 4
    );

    // The exemption is for one's own uploads only: the admin, out of budget, is refused
    // on Bob's upload and on made-up ones, and cannot create an upload either.
    let admin = &w.admin;
    assert_eq!(
        head(&w, admin, &at).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    let made_up = format!("/v1/uploads/{}", uuid::Uuid::now_v7());
    assert_eq!(
        patch(&w, admin, &made_up, 0, b"x").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    let r = crate::tus::tus(w.t.http.post(w.t.url("/v1/uploads")), admin)
        .header("Upload-Length", 1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
}
