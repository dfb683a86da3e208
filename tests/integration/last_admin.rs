//! A tenant always keeps an active admin: the last one cannot be demoted, and two admins
//! removing each other at the same moment (by demotion, ban or erasure) leave one of them
//! in place.

use chronicle::app::Mode;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Client, TestApp};

const SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// Ada founds a tenant (its admin) and Bob joins it by invitation (a user).
async fn tenant_of_two(t: &TestApp) -> (Client, Client) {
    let ada = t.signup("ada").await;
    let bob = t.join(&ada.token, "bob", "user").await;
    (ada, bob)
}

async fn set_role(t: &TestApp, by: &Client, of: &Client, role: &str) -> (StatusCode, Value) {
    let r = t
        .http
        .put(t.url(&format!("/v1/users/{}/role", of.user_id)))
        .bearer_auth(&by.token)
        .json(&json!({ "role": role }))
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap())
}

/// `POST /v1/users/{id}/{action}` (`ban`, `unban`, `erase`) by `by` on `of`.
async fn act(t: &TestApp, by: &Client, action: &str, of: &Client) -> StatusCode {
    t.http
        .post(t.url(&format!("/v1/users/{}/{action}", of.user_id)))
        .bearer_auth(&by.token)
        .send()
        .await
        .unwrap()
        .status()
}

async fn me(t: &TestApp, who: &Client) -> (StatusCode, Option<Value>) {
    let r = t
        .http
        .get(t.url("/v1/me"))
        .bearer_auth(&who.token)
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.ok())
}

/// Two removals sent at the same moment (`a` by Ada, `b` by Bob): exactly one went
/// through (`done`); the other was refused by the rule (409), or its caller had already
/// lost the role (403) or the account (401: banned or erased) when it arrived. True when
/// Ada's went through.
fn one_went_through(
    round: usize,
    a: StatusCode,
    b: StatusCode,
    done: impl Fn(StatusCode) -> bool,
) -> bool {
    assert_eq!(
        [a, b].into_iter().filter(|s| done(*s)).count(),
        1,
        "round {round}: {a} and {b}"
    );
    for refused in [a, b].into_iter().filter(|s| !done(*s)) {
        assert!(
            [
                StatusCode::CONFLICT,
                StatusCode::FORBIDDEN,
                StatusCode::UNAUTHORIZED
            ]
            .contains(&refused),
            "round {round}: {refused}"
        );
    }
    done(a)
}

async fn role_of(t: &TestApp, who: &Client) -> String {
    let (status, me) = me(t, who).await;
    assert_eq!(status, StatusCode::OK);
    me.unwrap()["role"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn the_last_admin_cannot_be_demoted_and_a_second_admin_lifts_that() {
    let t = TestApp::spawn(Mode::Serve, &[("JWT_SECRET", SECRET)]).await;
    let (ada, bob) = tenant_of_two(&t).await;

    let (status, body) = set_role(&t, &ada, &ada, "user").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "last_admin");
    assert_eq!(role_of(&t, &ada).await, "admin", "nothing changed");

    // With Bob made admin, Ada may step down; then Bob is the last one.
    assert_eq!(set_role(&t, &ada, &bob, "admin").await.0, StatusCode::OK);
    assert_eq!(set_role(&t, &ada, &ada, "auditor").await.0, StatusCode::OK);
    assert_eq!(
        set_role(&t, &bob, &bob, "user").await.0,
        StatusCode::CONFLICT
    );
    assert_eq!(role_of(&t, &bob).await, "admin");
    // Changes that take no admin away are not held up.
    assert_eq!(set_role(&t, &bob, &ada, "user").await.0, StatusCode::OK);
    t.app.stop().await;
}

/// Each round, Ada and Bob (both admins) remove each other at the same moment, by
/// demotion or by ban: exactly one of the two changes goes through, and the tenant is
/// left with one active admin.
#[tokio::test]
async fn two_admins_removing_each_other_at_once_leave_one() {
    let t = TestApp::spawn(Mode::Serve, &[("JWT_SECRET", SECRET)]).await;
    let (ada, bob) = tenant_of_two(&t).await;
    for round in 0..6 {
        assert_eq!(set_role(&t, &ada, &bob, "admin").await.0, StatusCode::OK);
        let by_ban = round % 2 == 1;
        let (a, b) = if by_ban {
            tokio::join!(act(&t, &ada, "ban", &bob), act(&t, &bob, "ban", &ada))
        } else {
            let (a, b) = tokio::join!(
                set_role(&t, &ada, &bob, "user"),
                set_role(&t, &bob, &ada, "user")
            );
            (a.0, b.0)
        };
        let ada_won = one_went_through(round, a, b, |s| s == StatusCode::OK);
        let (winner, loser) = if ada_won { (&ada, &bob) } else { (&bob, &ada) };
        assert_eq!(role_of(&t, winner).await, "admin", "round {round}");
        if by_ban {
            assert_eq!(act(&t, winner, "unban", loser).await, StatusCode::OK);
        } else {
            assert_eq!(role_of(&t, loser).await, "user", "round {round}");
        }
        // Whoever lost is promoted again at the top of the next round, by the winner.
        if winner.user_id != ada.user_id {
            assert_eq!(set_role(&t, &bob, &ada, "admin").await.0, StatusCode::OK);
        }
    }
    t.app.stop().await;
}

/// An erasure cannot be undone, so each round has a tenant of its own: its founder Ada and
/// a second admin, Bob. They erase each other (even rounds), or Ada erases Bob while Bob
/// demotes Ada (odd rounds), at the same moment: exactly one of the two goes through, and
/// the one left is an active admin.
#[tokio::test]
async fn two_admins_erasing_or_demoting_each_other_at_once_leave_one() {
    // Twelve sign-ups and sign-ins from one address.
    let t = TestApp::spawn(
        Mode::Serve,
        &[
            ("JWT_SECRET", SECRET),
            ("AUTH_RATE_LIMIT_PER_MINUTE", "1000"),
        ],
    )
    .await;
    for round in 0..6 {
        let ada = t.signup(&format!("ada{round}")).await;
        let bob = t.join(&ada.token, &format!("bob{round}"), "admin").await;
        let by_erasures = round % 2 == 0;
        let (a, b) = if by_erasures {
            tokio::join!(act(&t, &ada, "erase", &bob), act(&t, &bob, "erase", &ada))
        } else {
            let (a, b) = tokio::join!(
                act(&t, &ada, "erase", &bob),
                set_role(&t, &bob, &ada, "user")
            );
            (a, b.0)
        };
        let done = |s: StatusCode| s == StatusCode::NO_CONTENT || s == StatusCode::OK;
        let ada_won = one_went_through(round, a, b, done);
        let (winner, loser) = if ada_won { (&ada, &bob) } else { (&bob, &ada) };
        assert_eq!(role_of(&t, winner).await, "admin", "round {round}");
        if ada_won || by_erasures {
            // The loser was erased: their session is gone.
            assert_eq!(
                me(&t, loser).await.0,
                StatusCode::UNAUTHORIZED,
                "round {round}"
            );
        } else {
            assert_eq!(role_of(&t, loser).await, "user", "round {round}");
        }
    }
    t.app.stop().await;
}
