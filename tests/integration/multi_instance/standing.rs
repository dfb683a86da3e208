//! Two API instances on one database and one Redis, each remembering good standing in
//! memory (src/auth/standing.rs): a change of standing made through one instance bites
//! on the very next request to the other, whose memory was warm; with the standing
//! epochs' Redis down, no instance answers from memory and no change commits
//! unannounced (docs/auth-cache.md).

use chronicle::aggregates::session::{RevokeReason, Session, SessionCommand};
use chronicle::app::{App, Mode};
use chronicle::cache::standing::StandingEpochs;
use chronicle::ids::TenantId;
use chronicle::store::metadata::{Actor, EventMetadata};
use chronicle::store::{ChronicleStore, EventLog};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::common::{
    TempDir, TestApp, eventually_within, redis_url, test_config, unique_redis_prefix,
};
use crate::services::OwnRedis;

const SECRET: &str = "57a7d1a657a7d1a657a7d1a657a7d1a657a7d1a657a7d1a657a7d1a657a7d1a6";

/// Instance `a` (the test app, with projectors) and instance `b` (web only) on a's
/// database, sharing Redis (`redis`), its key prefix and the token secret.
struct Pair {
    a: TestApp,
    b: App,
    b_base: String,
    prefix: String,
    redis: String,
    _b_dir: TempDir,
}

impl Pair {
    async fn start(redis: &str) -> Pair {
        let prefix = unique_redis_prefix();
        let overrides = [
            ("JWT_SECRET", SECRET),
            ("REDIS_URL", redis),
            ("REDIS_KEY_PREFIX", prefix.as_str()),
            ("AUTH_RATE_LIMIT_PER_MINUTE", "1000"),
        ];
        let a = TestApp::spawn(Mode::Serve, &overrides).await;
        let b_dir = TempDir::new();
        let b = App::start(test_config(&a.db.url, &b_dir.0, &overrides), Mode::Web)
            .await
            .expect("second instance starts");
        let b_base = format!("http://{}", b.addr.unwrap());
        Pair {
            a,
            b,
            b_base,
            prefix,
            redis: redis.to_string(),
            _b_dir: b_dir,
        }
    }

    /// `GET path` on instance b as `token`: status and error code.
    async fn on_b(&self, path: &str, token: &str) -> (StatusCode, String) {
        let r = self
            .a
            .http
            .get(format!("{}{path}", self.b_base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        (
            status,
            body["error"]["code"].as_str().unwrap_or_default().into(),
        )
    }

    /// Two answers on b: the first fills b's memory, the second comes from it.
    async fn warm(&self, path: &str, token: &str) {
        for _ in 0..2 {
            assert_eq!(self.on_b(path, token).await.0, StatusCode::OK, "{path}");
        }
    }

    /// `method path` on instance a as `token`: the status.
    async fn on_a(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Value,
    ) -> StatusCode {
        let r = self
            .a
            .http
            .request(method, self.a.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        r.status()
    }

    /// A new login of `handle`: its access token and session id.
    async fn login(&self, handle: &str) -> (String, Uuid) {
        let r = self.a.login(&format!("{handle}@example.com")).await;
        assert_eq!(r.status(), StatusCode::OK);
        let body: Value = r.json().await.unwrap();
        (
            body["access_token"].as_str().unwrap().into(),
            body["session_id"].as_str().unwrap().parse().unwrap(),
        )
    }

    /// Revokes `session` through a log that announces nothing: how a writer that skipped
    /// the announcement would look to the instances.
    async fn revoke_unannounced(&self, tenant: &str, session: Uuid) {
        let tenant = TenantId(tenant.parse().unwrap());
        let store =
            ChronicleStore::<Session>::new(EventLog::new(self.a.db.app.clone()), tenant, 10);
        let meta = EventMetadata::new(tenant, Actor::System("test"), "unannounced");
        let revoke = SessionCommand::Revoke {
            reason: RevokeReason::Revoked,
        };
        chronicle::commands::execute(&store, &session.to_string(), revoke, &meta, &())
            .await
            .unwrap();
    }

    async fn epochs(&self) -> StandingEpochs {
        let conn = chronicle::ratelimit::connection_manager(&self.redis).unwrap();
        StandingEpochs::new(conn, &self.prefix)
    }

    async fn stop(self) {
        self.b.stop().await;
        self.a.app.stop().await;
    }
}

async fn create_key(pair: &Pair, token: &str) -> (String, String) {
    let r = pair
        .a
        .http
        .post(pair.a.url("/v1/api-keys"))
        .bearer_auth(token)
        .json(&json!({"name": "integration"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let created: Value = r.json().await.unwrap();
    (
        created["id"].as_str().unwrap().into(),
        created["key"].as_str().unwrap().into(),
    )
}

#[tokio::test]
async fn each_standing_change_through_one_instance_bites_on_the_next_request_to_the_other() {
    let pair = Pair::start(&redis_url()).await;
    let ada = pair.a.signup("ada").await;
    let bob = pair.a.join(&ada.token, "bob", "admin").await;
    let carol = pair.a.join(&ada.token, "carol", "admin").await;

    // A role change: b's remembered role and remembered account are both dropped.
    pair.warm("/v1/me", &bob.token).await;
    pair.warm("/v1/api-keys", &bob.token).await;
    let role = format!("/v1/users/{}/role", bob.user_id);
    let demoted = pair
        .on_a(
            reqwest::Method::PUT,
            &role,
            &ada.token,
            json!({"role": "user"}),
        )
        .await;
    assert_eq!(demoted, StatusCode::OK);
    let me: Value = pair
        .a
        .http
        .get(format!("{}/v1/me", pair.b_base))
        .bearer_auth(&bob.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["role"], "user", "b's /v1/me after the demotion");
    assert_eq!(
        pair.on_b("/v1/api-keys", &bob.token).await,
        (StatusCode::FORBIDDEN, "forbidden".into())
    );

    // A ban.
    pair.warm("/v1/me", &bob.token).await;
    let ban = format!("/v1/users/{}/ban", bob.user_id);
    assert_eq!(
        pair.on_a(reqwest::Method::POST, &ban, &ada.token, json!({}))
            .await,
        StatusCode::OK
    );
    assert_eq!(
        pair.on_b("/v1/me", &bob.token).await,
        (StatusCode::UNAUTHORIZED, "user_banned".into())
    );

    // A session revoked from another device.
    let (phone, phone_session) = pair.login("ada").await;
    pair.warm("/v1/me", &phone).await;
    let revoke = format!("/v1/sessions/{phone_session}");
    assert_eq!(
        pair.on_a(reqwest::Method::DELETE, &revoke, &ada.token, json!({}))
            .await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        pair.on_b("/v1/me", &phone).await,
        (StatusCode::UNAUTHORIZED, "session_revoked".into())
    );
    assert_eq!(pair.on_b("/v1/me", &ada.token).await.0, StatusCode::OK);

    // An API key revoked.
    let (key_id, key) = create_key(&pair, &ada.token).await;
    pair.warm("/v1/files", &key).await;
    let revoke = format!("/v1/api-keys/{key_id}");
    assert_eq!(
        pair.on_a(reqwest::Method::DELETE, &revoke, &ada.token, json!({}))
            .await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        pair.on_b("/v1/files", &key).await,
        (StatusCode::UNAUTHORIZED, "api_key_revoked".into())
    );

    // A key whose creator is removed (banned).
    let (_, carols_key) = create_key(&pair, &carol.token).await;
    pair.warm("/v1/files", &carols_key).await;
    let ban = format!("/v1/users/{}/ban", carol.user_id);
    assert_eq!(
        pair.on_a(reqwest::Method::POST, &ban, &ada.token, json!({}))
            .await,
        StatusCode::OK
    );
    assert_eq!(
        pair.on_b("/v1/files", &carols_key).await,
        (StatusCode::UNAUTHORIZED, "api_key_creator_removed".into())
    );
    pair.stop().await;
}

/// The memory is real (an unannounced revocation is not seen while the epoch stands:
/// this is why every writer of standing announces), the next announcement drops it,
/// and a change announced but not ended keeps every request on the log.
#[tokio::test]
async fn memory_is_served_only_under_the_epoch_it_was_read_under() {
    let pair = Pair::start(&redis_url()).await;
    let ada = pair.a.signup("ada").await;
    let epochs = pair.epochs().await;
    let tenant: Uuid = ada.tenant_id.parse().unwrap();

    let (token, session) = pair.login("ada").await;
    pair.warm("/v1/me", &token).await;
    pair.revoke_unannounced(&ada.tenant_id, session).await;
    assert_eq!(
        pair.on_b("/v1/me", &token).await.0,
        StatusCode::OK,
        "b answered from the log, not from memory: the test would prove nothing"
    );
    epochs.begin_change(tenant).await.unwrap();
    epochs.end_change(tenant).await;
    assert_eq!(
        pair.on_b("/v1/me", &token).await,
        (StatusCode::UNAUTHORIZED, "session_revoked".into())
    );

    // Announced, never ended (a writer that died between its announcement and its end):
    // b reads the log on every request.
    let (token, session) = pair.login("ada").await;
    pair.warm("/v1/me", &token).await;
    epochs.begin_change(tenant).await.unwrap();
    pair.warm("/v1/me", &token).await;
    pair.revoke_unannounced(&ada.tenant_id, session).await;
    assert_eq!(
        pair.on_b("/v1/me", &token).await,
        (StatusCode::UNAUTHORIZED, "session_revoked".into())
    );
    pair.stop().await;
}

/// The invalidation channel interrupted: with Redis down, a change of standing is
/// refused (503, nothing committed) and every instance authenticates from the log —
/// even a change that reached the log unannounced bites at once. With Redis back empty
/// (its data lost between the warm-up and the change), a ban bites on the next request.
#[tokio::test]
async fn with_the_channel_down_nothing_is_served_from_memory_and_no_change_commits_unannounced() {
    let mut redis = OwnRedis::start();
    let pair = Pair::start(&redis.url()).await;
    let ada = pair.a.signup("ada").await;
    let bob = pair.a.join(&ada.token, "bob", "user").await;
    let (bobs_phone, phone_session) = pair.login("bob").await;
    pair.warm("/v1/me", &bob.token).await;
    pair.warm("/v1/me", &bobs_phone).await;

    redis.stop();
    let ban = format!("/v1/users/{}/ban", bob.user_id);
    assert_eq!(
        pair.on_a(reqwest::Method::POST, &ban, &ada.token, json!({}))
            .await,
        StatusCode::SERVICE_UNAVAILABLE,
        "a ban that no instance could learn of"
    );
    assert_eq!(
        pair.on_b("/v1/me", &bob.token).await.0,
        StatusCode::OK,
        "the refused ban committed nothing"
    );
    pair.revoke_unannounced(&ada.tenant_id, phone_session).await;
    assert_eq!(
        pair.on_b("/v1/me", &bobs_phone).await,
        (StatusCode::UNAUTHORIZED, "session_revoked".into()),
        "b answered from memory while the epochs were unreachable"
    );

    redis.resume();
    // Past the readers' breaker (1 s), so the warm-up below fills b's memory.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    pair.warm("/v1/me", &bob.token).await;
    // Redis restarts empty between b's warm-up and the ban.
    redis.stop();
    redis.resume();
    eventually_within(
        "the ban accepted",
        std::time::Duration::from_secs(10),
        async || {
            let status = pair
                .on_a(reqwest::Method::POST, &ban, &ada.token, json!({}))
                .await;
            // Refused while a's connection to the new Redis is not up yet: nothing committed.
            if status != StatusCode::OK {
                assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
            }
            (status == StatusCode::OK).then_some(())
        },
    )
    .await;
    assert_eq!(
        pair.on_b("/v1/me", &bob.token).await,
        (StatusCode::UNAUTHORIZED, "user_banned".into())
    );
    pair.stop().await;
}
