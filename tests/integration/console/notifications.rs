//! The console's notifications page: the person's inbox, "Mark read" and "Mark all
//! read", through the same use cases and the same rows as `/v1/notifications`.

use chronicle::app::Mode;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_SECURITY_POLICY, LOCATION};
use serde_json::{Value, json};

use super::security::{CSP, csrf_of, signed_up};
use crate::common::{TestApp, WORKER, bytes_of, eventually_some};

/// The API's view of the same inbox.
async fn inbox(t: &TestApp, token: &str) -> Value {
    t.http
        .get(t.url("/v1/notifications"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// `text` as the page's templates escape it.
fn html(text: &str) -> String {
    text.replace('&', "&#38;")
        .replace('<', "&#60;")
        .replace('>', "&#62;")
        .replace('"', "&#34;")
        .replace('\'', "&#39;")
}

async fn events(t: &TestApp, event_type: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = $1")
        .bind(event_type)
        .fetch_one(&t.db.owner)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_inbox_page_lists_marks_one_and_marks_all_read() {
    let t = TestApp::spawn(Mode::Serve, &[WORKER[0]]).await;
    let mut b = signed_up(&t, "nia").await;
    let api = t
        .signed_in("nia@example.com", &json!({"tenant_id": "", "user_id": ""}))
        .await;
    for (i, name) in ["first.bin", "second.bin"].into_iter().enumerate() {
        t.upload_ok(&api, name, bytes_of(i as u8 + 40, 2000)).await;
    }
    // Both completions notified: the page says so, newest first, each with its button.
    let page = eventually_some("two unread notifications on the page", async || {
        let (status, headers, page) = b.get("/notifications").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[CONTENT_SECURITY_POLICY], CSP);
        page.contains("2 unread.").then_some(page)
    })
    .await;
    assert!(
        page.contains("href=\"/notifications\" aria-current=\"page\""),
        "the nav marks the section"
    );
    let listed = inbox(&t, &api.token).await;
    let items = listed["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{listed}");
    let (newest, oldest) = (
        items[0]["id"].as_str().unwrap(),
        items[1]["id"].as_str().unwrap(),
    );
    for item in items {
        let message = html(item["message"].as_str().unwrap());
        assert!(page.contains(&message), "{message} is on the page: {page}");
    }
    assert!(
        page.find(&format!("id=\"n-{newest}\"")) < page.find(&format!("id=\"n-{oldest}\"")),
        "newest first"
    );
    assert!(page.contains(&format!("action=\"/notifications/{oldest}/read\"")));
    assert!(page.contains("Mark all read"));
    assert!(page.contains("id=\"nav-unread\">2<"), "the nav counts them");

    // One read through the page: exactly that one, as the API sees it.
    let token = csrf_of(&page);
    let (status, headers, _) = b
        .post_form(
            &format!("/notifications/{oldest}/read"),
            &[("csrf_token", &token)],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[LOCATION], "/notifications");
    let (_, _, page) = b.get("/notifications").await;
    assert!(page.contains("1 unread."), "{page}");
    assert!(page.contains("id=\"nav-unread\">1<"));
    assert!(!page.contains(&format!("action=\"/notifications/{oldest}/read\"")));
    let listed = inbox(&t, &api.token).await;
    assert_eq!(listed["unread_count"], 1);
    assert!(listed["items"][1]["read_at"].is_string(), "{listed}");
    assert!(listed["items"][0]["read_at"].is_null(), "{listed}");
    assert_eq!(events(&t, "NotificationRead").await, 1);

    // Without the form's token: refused, nothing recorded.
    let (status, _, _) = b.post_form("/notifications/read", &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(events(&t, "InboxRead").await, 0);

    // All read: one event for the whole inbox; the button goes.
    let (status, _, _) = b
        .post_form("/notifications/read", &[("csrf_token", &token)])
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, _, page) = b.get("/notifications").await;
    assert!(page.contains("Nothing unread."), "{page}");
    assert!(!page.contains("Mark all read"));
    assert!(
        !page.contains("nav-unread"),
        "no count when nothing is unread"
    );
    assert_eq!(inbox(&t, &api.token).await["unread_count"], 0);
    assert_eq!(events(&t, "InboxRead").await, 1);
    let (_, _, unread) = b.get("/notifications?unread=true").await;
    assert!(unread.contains("No unread notifications."), "{unread}");

    // Bad input: the error page with the API's status, nothing recorded.
    let (status, _, _) = b.get("/notifications?limit=0").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _, _) = b
        .post_form("/notifications/not-an-id/read", &[("csrf_token", &token)])
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Someone else's notification (a person of another tenant) is not found here.
    let mut other = signed_up(&t, "oti").await;
    let (status, _, _) = other.get("/notifications").await;
    assert_eq!(status, StatusCode::OK);
    let theirs = csrf_of(&other.get("/notifications").await.2);
    let (status, _, _) = other
        .post_form(
            &format!("/notifications/{newest}/read"),
            &[("csrf_token", &theirs)],
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(events(&t, "NotificationRead").await, 1);
}
