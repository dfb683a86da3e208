//! The console's session cookie, CSRF tokens, CSP and static files, driven over HTTP
//! the way a browser (or an attacker's page) would send its requests.

use chronicle::app::Mode;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_SECURITY_POLICY, COOKIE, LOCATION, SET_COOKIE};
use serde_json::Value;

use crate::common::{PASSWORD, TestApp, eventually};

pub(super) const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// A browser without JavaScript: keeps its cookies, follows no redirects.
pub(super) struct Browser {
    http: reqwest::Client,
    base: String,
    cookies: Vec<(String, String)>,
}

impl Browser {
    pub(super) fn new(t: &TestApp) -> Self {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .user_agent("Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0 Safari/537.36")
                .build()
                .unwrap(),
            base: t.base.clone(),
            cookies: Vec::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn cookie(&self, name: &str) -> Option<String> {
        self.cookies
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    /// Keeps the cookies a response sets (an empty value deletes one).
    fn keep(&mut self, response: &reqwest::Response) {
        for set in response.headers().get_all(SET_COOKIE) {
            let set = set.to_str().unwrap();
            for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
                assert!(set.contains(attribute), "{set} lacks {attribute}");
            }
            let (pair, _) = set.split_once(';').unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            self.cookies.retain(|(k, _)| k != name);
            if !value.is_empty() {
                self.cookies.push((name.to_string(), value.to_string()));
            }
        }
    }

    pub(super) async fn get(
        &mut self,
        path: &str,
    ) -> (StatusCode, reqwest::header::HeaderMap, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header(COOKIE, self.cookie_header())
            .send()
            .await
            .unwrap();
        self.keep(&r);
        let (status, headers) = (r.status(), r.headers().clone());
        (status, headers, r.text().await.unwrap())
    }

    pub(super) async fn post_form(
        &mut self,
        path: &str,
        form: &[(&str, &str)],
    ) -> (StatusCode, reqwest::header::HeaderMap, String) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header(COOKIE, self.cookie_header())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(form).unwrap())
            .send()
            .await
            .unwrap();
        self.keep(&r);
        let (status, headers) = (r.status(), r.headers().clone());
        (status, headers, r.text().await.unwrap())
    }
}

/// The value of `<input name="csrf_token">` or `<meta name="csrf-token">` in a page.
pub(super) fn csrf_of(html: &str) -> String {
    for marker in [
        "name=\"csrf_token\" value=\"",
        "name=\"csrf-token\" content=\"",
    ] {
        if let Some((_, rest)) = html.split_once(marker) {
            return rest.split('"').next().unwrap().to_string();
        }
    }
    panic!("no CSRF token in {html}")
}

async fn sessions_of(t: &TestApp, tenant: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE tenant_id = $1::uuid AND event_type = 'SessionStarted'",
    )
    .bind(tenant)
    .fetch_one(&t.db.owner)
    .await
    .unwrap()
}

/// Signs up through the console's form: a tenant and its admin, signed in.
pub(super) async fn signed_up(t: &TestApp, handle: &str) -> Browser {
    let mut b = Browser::new(t);
    let (status, headers, page) = b.get("/sign-up").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[CONTENT_SECURITY_POLICY], CSP);
    let token = csrf_of(&page);
    let email = format!("{handle}@example.com");
    let (status, headers, body) = b
        .post_form(
            "/sign-up",
            &[
                ("csrf_token", &token),
                ("tenant_name", "Acme"),
                ("handle", handle),
                ("name", "Ada"),
                ("email", &email),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(headers[LOCATION], "/files");
    assert!(b.cookie("chronicle_session").is_some());
    assert!(
        b.cookie("chronicle_presession").is_none(),
        "the form's nonce is spent"
    );
    b
}

#[tokio::test]
async fn a_form_without_the_csrf_token_is_refused_and_changes_nothing() {
    let t = TestApp::spawn(Mode::Web, &[]).await;
    let mut b = signed_up(&t, "ada").await;
    let (_, _, page) = b.get("/devices").await;
    let token = csrf_of(&page);
    let session = b.cookie("chronicle_session").unwrap();
    let tenant = session.split('.').next().unwrap().to_string();
    let session_id = session.split('.').nth(1).unwrap().to_string();

    // Sign-in and sign-up without (or with a wrong) token: 403, no session, no tenant.
    let mut stranger = Browser::new(&t);
    stranger.get("/sign-in").await;
    for token in [None, Some("forged"), Some(token.as_str())] {
        let mut form = vec![("email", "ada@example.com"), ("password", PASSWORD)];
        if let Some(token) = token {
            form.push(("csrf_token", token));
        }
        let (status, headers, body) = stranger.post_form("/sign-in", &form).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{token:?}: {body}");
        assert_eq!(headers[CONTENT_SECURITY_POLICY], CSP);
        assert!(body.contains("CSRF"), "{body}");
        assert!(stranger.cookie("chronicle_session").is_none());
    }
    assert_eq!(sessions_of(&t, &tenant).await, 1, "no session was started");

    // Revoking a session or signing out without the token: refused, the session lives.
    let revoke = format!("/devices/sessions/{session_id}/revoke");
    for (path, form) in [
        (revoke.as_str(), vec![]),
        ("/sign-out", vec![("csrf_token", "x")]),
    ] {
        let (status, _, _) = b.post_form(path, &form).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
    }
    let (status, _, _) = b.get("/devices").await;
    assert_eq!(status, StatusCode::OK, "still signed in");

    // The API with the cookie: reads work, a state change needs X-CSRF-Token.
    let api = |method: reqwest::Method, path: &str, csrf: Option<&str>| {
        let mut r = b
            .http
            .request(method, format!("{}{path}", t.base))
            .header(COOKIE, b.cookie_header());
        if let Some(csrf) = csrf {
            r = r.header("x-csrf-token", csrf);
        }
        r.send()
    };
    let r = api(reqwest::Method::GET, "/v1/files", None).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = api(reqwest::Method::POST, "/v1/auth/logout", None)
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "csrf_token_invalid");
    let r = api(reqwest::Method::POST, "/v1/auth/logout", Some("forged"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let revoked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE tenant_id = $1::uuid AND event_type = 'SessionRevoked'",
    )
    .bind(&tenant)
    .fetch_one(&t.db.owner)
    .await
    .unwrap();
    assert_eq!(revoked, 0, "nothing was revoked");

    // With the token, sign-out works and the cookie stops working at once.
    let (status, headers, _) = b.post_form("/sign-out", &[("csrf_token", &token)]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[LOCATION], "/sign-in");
    let r = b
        .http
        .get(format!("{}/v1/files", t.base))
        .header(COOKIE, format!("chronicle_session={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_console_session_is_listed_under_devices_and_revoking_it_bites_at_once() {
    let t = TestApp::spawn(Mode::Serve, &[]).await;
    let mut b = signed_up(&t, "bob").await;
    // The same session records as the API: an API login of the same person sees it.
    let api = t
        .signed_in(
            "bob@example.com",
            &serde_json::json!({"tenant_id": "", "user_id": ""}),
        )
        .await;
    let session_id = b
        .cookie("chronicle_session")
        .unwrap()
        .split('.')
        .nth(1)
        .unwrap()
        .to_string();
    let listed = eventually("the console session is listed", async || {
        let r = t
            .http
            .get(t.url("/v1/sessions"))
            .bearer_auth(&api.token)
            .send()
            .await
            .unwrap();
        let sessions: Value = r.json().await.unwrap();
        sessions
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == session_id.as_str())
    });
    listed.await;
    let (status, _, page) = b.get("/devices").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains(&session_id),
        "the Devices page lists the session"
    );
    assert!(page.contains("this browser"));

    // Revoked from another device: the next page is the sign-in page, the cookie goes.
    let r = t
        .http
        .delete(t.url(&format!("/v1/sessions/{session_id}")))
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (status, headers, _) = b.get("/devices").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[LOCATION], "/sign-in");
    assert!(
        b.cookie("chronicle_session").is_none(),
        "the dead cookie is deleted"
    );
}

#[tokio::test]
async fn every_console_page_sends_the_csp_and_assets_are_cached_by_etag() {
    let t = TestApp::spawn(Mode::Web, &[]).await;
    let mut b = signed_up(&t, "cyd").await;
    for path in [
        "/",
        "/files",
        "/notifications",
        "/devices",
        "/audit",
        "/analytics",
        "/admin",
        "/docs",
    ] {
        let (status, headers, _) = b.get(path).await;
        assert!(
            status == StatusCode::OK || status == StatusCode::SEE_OTHER,
            "{path}: {status}"
        );
        assert_eq!(headers[CONTENT_SECURITY_POLICY], CSP, "{path}");
        if status == StatusCode::OK {
            assert_eq!(headers["cache-control"], "no-store", "{path}");
        }
    }
    let mut visitor = Browser::new(&t);
    for path in ["/sign-in", "/sign-up", "/files"] {
        let (_, headers, _) = visitor.get(path).await;
        assert_eq!(headers[CONTENT_SECURITY_POLICY], CSP, "{path}");
    }

    // The page links its files with their version; that URL may be cached for good.
    let (_, _, page) = b.get("/devices").await;
    let href = page
        .split("href=\"/assets/console.css?v=")
        .nth(1)
        .map(|rest| format!("/assets/console.css?v={}", rest.split('"').next().unwrap()))
        .expect("the stylesheet is linked");
    let (status, headers, css) = b.get(&href).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "text/css; charset=utf-8");
    assert_eq!(
        headers["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(headers[CONTENT_SECURITY_POLICY], CSP);
    assert!(css.contains(":focus-visible"));
    let etag = headers["etag"].to_str().unwrap().to_string();
    let r = b
        .http
        .get(format!("{}/assets/vendor/htmx.min.js", t.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(
        r.headers()["cache-control"],
        "no-cache",
        "unversioned: revalidate"
    );
    let r = b
        .http
        .get(t.url("/assets/console.css"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    let r = b
        .http
        .get(t.url("/assets/nothing.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // The API keeps its own policy.
    let r = b.http.get(t.url("/health")).send().await.unwrap();
    assert!(
        r.headers()[CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .starts_with("default-src 'none'")
    );
}

#[tokio::test]
async fn another_tenants_file_in_a_console_url_is_not_found() {
    let t = TestApp::spawn(Mode::Serve, &[]).await;
    let other = t.signup("zoe").await;
    let theirs = t.upload_ok(&other, "theirs.txt", b"private".to_vec()).await;
    let mut b = signed_up(&t, "eve").await;
    let (status, headers, page) = b
        .get(&format!("/files/{}", theirs["file_id"].as_str().unwrap()))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{page}");
    assert_eq!(headers[CONTENT_SECURITY_POLICY], CSP);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(!page.contains("theirs.txt"));
    // The same answer as for an id that does not exist, or is not an id.
    for path in [
        format!("/files/{}", uuid::Uuid::now_v7()),
        "/files/nope".to_string(),
    ] {
        let (status, _, _) = b.get(&path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    // Their file is not in my listing either, whatever I search.
    let (status, _, table) = b.get("/files/table?q=theirs").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!table.contains("theirs.txt"));
    // A listing parameter the console does not know is refused, not ignored.
    let (status, _, _) = b.get("/files?colour=red").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_user_signs_in_and_sees_only_what_the_role_allows() {
    let t = TestApp::spawn(Mode::Web, &[]).await;
    let admin = t.signup("amy").await;
    t.join(&admin.token, "ulf", "user").await;
    let mut b = Browser::new(&t);
    let (_, _, page) = b.get("/sign-in").await;
    let token = csrf_of(&page);
    // A wrong password: the form again with its message, no cookie.
    let (status, _, page) = b
        .post_form(
            "/sign-in",
            &[
                ("csrf_token", &token),
                ("email", "ulf@example.com"),
                ("password", "wrong password!"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(page.contains("Email or password is wrong."), "{page}");
    assert!(b.cookie("chronicle_session").is_none());
    let token = csrf_of(&page);
    let (status, headers, _) = b
        .post_form(
            "/sign-in",
            &[
                ("csrf_token", &token),
                ("email", "ulf@example.com"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[LOCATION], "/files");
    let (status, _, page) = b.get("/files").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("ulf (user)"), "{page}");
    // A user uploads, so sees the tenant's storage (nothing yet, no quota here).
    assert!(page.contains("Your tenant: 0 B stored</p>"), "{page}");
    assert!(page.contains("href=\"/devices\""));
    for hidden in ["href=\"/admin\"", "href=\"/audit\"", "href=\"/analytics\""] {
        assert!(!page.contains(hidden), "a user's navigation shows {hidden}");
    }
    // The pages themselves refuse, as the API does for the role.
    for path in ["/admin", "/audit", "/analytics"] {
        let (status, headers, page) = b.get(path).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        assert_eq!(headers[CONTENT_SECURITY_POLICY], CSP);
        assert!(page.contains("Not allowed"), "{page}");
    }
}

#[tokio::test]
async fn an_invited_person_joins_the_tenant_through_the_sign_up_form() {
    let t = TestApp::spawn(Mode::Web, &[]).await;
    let admin = t.signup("ines").await;
    let r = t
        .http
        .post(t.url("/v1/tenants/current/invitations"))
        .bearer_auth(&admin.token)
        .json(&serde_json::json!({"role": "auditor"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let invitation = r.json::<Value>().await.unwrap()["invitation_token"]
        .as_str()
        .unwrap()
        .to_string();
    // Both a new organisation and an invitation: refused on the form, nothing written.
    let mut b = Browser::new(&t);
    let (_, _, page) = b.get("/sign-up").await;
    let (status, _, page) = join(&mut b, &page, "Other org", &invitation).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{page}");
    assert!(page.contains("either tenant_name"), "{page}");
    assert!(b.cookie("chronicle_session").is_none());
    // The invitation alone: a member of the inviting tenant with the invited role.
    let (status, headers, page) = join(&mut b, &page, "", &invitation).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
    assert_eq!(headers[LOCATION], "/files");
    let (status, _, page) = b.get("/audit").await;
    assert_eq!(status, StatusCode::OK, "an auditor reads the audit log");
    assert!(page.contains("jon (auditor)"), "{page}");
    // An auditor uploads nothing: no upload section, no storage line.
    let (status, _, page) = b.get("/files").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!page.contains("id=\"usage\""), "{page}");
    let tenant_of_jon: String = sqlx::query_scalar(
        "SELECT tenant_id::text FROM credentials WHERE email = 'jon@example.com'",
    )
    .fetch_one(&t.db.owner)
    .await
    .unwrap();
    assert_eq!(tenant_of_jon, admin.tenant_id);
}

/// Posts the sign-up form of `page` as Jon, with `tenant_name` and `invitation`.
async fn join(
    b: &mut Browser,
    page: &str,
    tenant_name: &str,
    invitation: &str,
) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let token = csrf_of(page);
    b.post_form(
        "/sign-up",
        &[
            ("csrf_token", &token),
            ("tenant_name", tenant_name),
            ("invitation_token", invitation),
            ("handle", "jon"),
            ("name", "Jon"),
            ("email", "jon@example.com"),
            ("password", PASSWORD),
        ],
    )
    .await
}
