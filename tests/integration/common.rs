//! Test fixtures: every test gets its own freshly migrated database (dropped afterwards),
//! so the suite runs in parallel against the real Postgres and Redis.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use chronicle::app::{App, Mode};
use chronicle::config::{Config, Pooler};
use chronicle::db::{self, DbRole};
use sqlx::PgPool;

pub fn base_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/postgres".into())
}

/// The port of a transaction-mode PgBouncer in front of the test Postgres
/// (`PGBOUNCER_TEST_PORT`, started by scripts/start-pgbouncer.sh): when set, every test
/// app and the test's own pools go through it (docs/testing.md, "Through PgBouncer").
pub fn pgbouncer_port() -> Option<u16> {
    std::env::var("PGBOUNCER_TEST_PORT")
        .ok()
        .map(|p| p.parse().expect("PGBOUNCER_TEST_PORT is a port"))
}

/// `url` (of the test Postgres) through the PgBouncer, when one is configured.
pub fn through_pgbouncer(url: &str) -> String {
    match pgbouncer_port() {
        Some(port) => url.replacen(&authority(&base_url()), &format!("127.0.0.1:{port}"), 1),
        None => url.to_string(),
    }
}

/// `url` with the PgBouncer (if any) taken out: the test Postgres itself.
pub fn direct(url: &str) -> String {
    match pgbouncer_port() {
        Some(port) => url.replacen(&format!("127.0.0.1:{port}"), &authority(&base_url()), 1),
        None => url.to_string(),
    }
}

/// `host:port` of a `postgres://user@host:port/db` URL.
fn authority(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest).to_string()
}

/// The settings besides `DATABASE_URL` a process started by a test needs for `url`:
/// behind the PgBouncer, the pooler mode and the direct URL (nothing otherwise).
pub fn pooler_env(url: &str) -> Vec<(&'static str, String)> {
    if direct(url) == url {
        return Vec::new();
    }
    vec![
        ("DATABASE_POOLER", "transaction".into()),
        ("DATABASE_DIRECT_URL", direct(url)),
    ]
}

pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

pub struct TestDb {
    pub name: String,
    /// What apps get as `DATABASE_URL`: through the PgBouncer when the run has one.
    pub url: String,
    /// The owner (superuser locally): for fixtures and tampering.
    pub owner: PgPool,
    /// `chronicle_app`: what the API runs as.
    pub app: PgPool,
    /// `chronicle_worker`: what projectors run as.
    pub worker: PgPool,
}

/// Logs go to the test's captured output, shown when a test fails.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info,sqlx=warn"))
        .with_test_writer()
        .try_init();
}

impl TestDb {
    pub async fn new() -> Self {
        Self::on(&format!("chronicle_test_{}", uuid::Uuid::now_v7().simple())).await
    }

    /// A transaction as the API's role inside `tenant` (row-level security applies), as
    /// a request's: `app.tenant_id` set for the transaction only.
    pub async fn as_tenant(
        &self,
        tenant: uuid::Uuid,
    ) -> sqlx::Transaction<'static, sqlx::Postgres> {
        self.app
            .begin_with(format!(
                "BEGIN; SELECT set_config('app.tenant_id', '{tenant}', true)"
            ))
            .await
            .unwrap()
    }

    /// A new database migrated only up to migration `first_not_run` (say "0050"), as a
    /// deployment's database stands before an upgrade: its name, for [`TestDb::on`] to
    /// run the rest (as the next start does), and an owner pool to seed it with.
    pub async fn before_migration(first_not_run: &str) -> (String, PgPool) {
        let name = format!("chronicle_test_{}", uuid::Uuid::now_v7().simple());
        let base = base_url();
        let url = format!("{}/{name}", base.rsplit_once('/').unwrap().0);
        db::ensure_database(&url).await.unwrap();
        let older = TempDir::new();
        for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations")).unwrap()
        {
            let path = entry.unwrap().path();
            let file = path.file_name().unwrap().to_string_lossy().to_string();
            if file.as_str() < first_not_run {
                std::fs::copy(&path, older.0.join(&file)).unwrap();
            }
        }
        let owner = db::pool(&url, DbRole::Owner, 2).await.unwrap();
        sqlx::migrate::Migrator::new(older.0.as_path())
            .await
            .unwrap()
            .run(&owner)
            .await
            .unwrap();
        (name, owner)
    }

    /// The database `name` (created if missing), migrated; dropped with the value.
    pub async fn on(name: &str) -> Self {
        init_tracing();
        let name = name.to_string();
        let base = base_url();
        let url = match base.rsplit_once('/') {
            Some((prefix, _)) => format!("{prefix}/{name}"),
            None => panic!("TEST_DATABASE_URL must end with /<database>"),
        };
        let url = through_pgbouncer(&url);
        let pooler = match pgbouncer_port() {
            Some(_) => Pooler::Transaction,
            None => Pooler::None,
        };
        let endpoints = db::Endpoints::new(url.clone(), Some(direct(&url)), pooler);
        endpoints.migrate().await.expect("migrate test database");
        let owner = endpoints.pool(DbRole::Owner, 4).await.unwrap();
        let app = endpoints.pool(DbRole::App, 8).await.unwrap();
        let worker = endpoints.pool(DbRole::Worker, 8).await.unwrap();
        TestDb {
            name,
            url,
            owner,
            app,
            worker,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let base = base_url();
        // Drop runs outside async context; use a private runtime on a helper thread.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                if let Ok(pool) = sqlx::PgPool::connect(&base).await {
                    let _ =
                        sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                            .execute(&pool)
                            .await;
                }
            })
        })
        .join();
    }
}

pub struct TestApp {
    pub app: App,
    pub base: String,
    pub http: reqwest::Client,
    pub db: TestDb,
    _data_dir: TempDir,
}

/// A data directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let dir =
            std::env::temp_dir().join(format!("chronicle-test-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A Redis key prefix no other test uses.
pub fn unique_redis_prefix() -> String {
    format!("chronicle-test:{}:", uuid::Uuid::now_v7().simple())
}

pub fn test_config(db_url: &str, data_dir: &std::path::Path, overrides: &[(&str, &str)]) -> Config {
    let mut vars: HashMap<String, String> = HashMap::from([
        ("DATABASE_URL".into(), db_url.to_string()),
        ("REDIS_URL".into(), redis_url()),
        ("BIND_ADDR".into(), "127.0.0.1:0".into()),
        ("DATA_DIR".into(), data_dir.display().to_string()),
        ("SNAPSHOT_EVERY".into(), "10".into()),
        // Every test app has its own rate-limit budgets: the suite runs in parallel from
        // one IP against one Redis. Tests sharing a budget override this with one prefix.
        ("REDIS_KEY_PREFIX".into(), unique_redis_prefix()),
        // Most tests drive the worker's File commands themselves; a real worker taking
        // the jobs of their fake uploads would race them. Pipeline tests turn it on.
        ("WORKER_CONCURRENCY".into(), "0".into()),
        // Likewise webhook delivery (its own pool of connections): the webhook tests
        // turn it on.
        ("WEBHOOK_CONCURRENCY".into(), "0".into()),
    ]);
    // Through the PgBouncer (a URL of the test database on its port): what a
    // deployment behind a transaction pooler sets.
    for (k, v) in pooler_env(db_url) {
        vars.insert(k.into(), v);
    }
    for (k, v) in overrides {
        vars.insert(k.to_string(), v.to_string());
    }
    Config::from_lookup(|k| vars.get(k).cloned()).expect("test config is valid")
}

impl TestApp {
    pub async fn spawn(mode: Mode, overrides: &[(&str, &str)]) -> TestApp {
        Self::spawn_on(TestDb::new().await, mode, overrides).await
    }

    /// On a database made beforehand (settings that name it, e.g. a replica's URL).
    pub async fn spawn_on(db: TestDb, mode: Mode, overrides: &[(&str, &str)]) -> TestApp {
        let data_dir = TempDir::new();
        let config = test_config(&db.url, &data_dir.0, overrides);
        let app = App::start(config, mode).await.expect("app starts");
        let base = app.addr.map(|a| format!("http://{a}")).unwrap_or_default();
        TestApp {
            app,
            base,
            http: reqwest::Client::new(),
            db,
            _data_dir: data_dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// The pages (shared buffers hit or read) the top node of an `EXPLAIN (ANALYZE, BUFFERS,
/// FORMAT JSON)` plan touched: what a query read, whatever the machine's speed.
pub fn pages_read(plan: &serde_json::Value) -> i64 {
    let top = &plan[0]["Plan"];
    top["Shared Hit Blocks"].as_i64().unwrap() + top["Shared Read Blocks"].as_i64().unwrap()
}

/// Every row of `table` as JSON text, sorted: two calls compare equal exactly when the
/// table's contents are equal (rebuild tests).
pub async fn table_contents(pool: &PgPool, table: &str) -> Vec<String> {
    sqlx::query_scalar(&format!(
        "SELECT row_to_json(t)::text FROM {table} t ORDER BY 1"
    ))
    .fetch_all(pool)
    .await
    .unwrap()
}

// ---------------------------------------------------------------------------------------
// The harness: what tests do through the API, named as the spec names it. Test files use
// these instead of writing their own register/login/upload/poll helpers.

/// The password every test account gets.
pub const PASSWORD: &str = "correct horse battery staple";

/// Overrides for a real worker taking jobs (the test config's default is none).
pub const WORKER: &[(&str, &str)] = &[("WORKER_CONCURRENCY", "2")];

/// The user agent tests log in with unless they say otherwise.
pub const BROWSER: &str = "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0";

/// A signed-in caller: the admin of a new tenant (`TestApp::signup`).
pub struct Client {
    pub token: String,
    pub tenant_id: String,
    pub user_id: String,
}

/// Deterministic bytes of a given length; different seeds give different contents.
pub fn bytes_of(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// How long `eventually` waits before failing the test. Generous: it bounds only a
/// failing test; a passing one returns as soon as its condition holds.
pub const PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);

/// Polls `check` every 50 ms until it returns `Some`, and returns that; fails the test
/// naming `what` when `PATIENCE` passes first. For everything that becomes true
/// asynchronously (projections, the worker, notifications, garbage collection).
pub async fn eventually_some<T>(what: &str, check: impl AsyncFnMut() -> Option<T>) -> T {
    eventually_within(what, PATIENCE, check).await
}

/// `eventually_some` with its own bound, for a test whose point is how soon something
/// happens (an expiry after its deadline) or that needs longer (a 200 MiB upload).
pub async fn eventually_within<T>(
    what: &str,
    within: std::time::Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    eventually_explained(what, within, async || check().await.ok_or_else(String::new)).await
}

/// `eventually_within` for a check that says what it found instead: `Err(complaint)`
/// until it holds, and a failing test names the last complaint (the rows it saw, a
/// process's log) — the fault and multi-instance tests are only readable with it.
pub async fn eventually_explained<T>(
    what: &str,
    within: std::time::Duration,
    mut check: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match check().await {
            Ok(found) => return found,
            Err(complaint) => assert!(
                tokio::time::Instant::now() < deadline,
                "not within {within:?}: {what}{}{complaint}",
                if complaint.is_empty() { "" } else { ": " }
            ),
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A raw HTTP/1.1 request to the app: `line` (method and path), `headers`, then `body`;
/// `host` and `content-length` are added.
pub fn raw_request(t: &TestApp, line: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let host = t.base.trim_start_matches("http://");
    let mut head = format!("{line} HTTP/1.1\r\nhost: {host}\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    request
}

/// The API of `t` with `extra` routes of a test's own beside it, behind the API's edge
/// (`api::router_with`) and its idempotency layer, as the real routes are; served on a
/// port of its own.
pub async fn serve_test_routes(
    t: &TestApp,
    extra: axum::Router<chronicle::state::AppState>,
) -> std::net::SocketAddr {
    let state = t.app.state.clone();
    let extra = extra.route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        chronicle::api::edge::idempotency::idempotency,
    ));
    let router = chronicle::api::router_with(state, extra);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let service = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
        axum::serve(listener, service).await.unwrap();
    });
    addr
}

/// One answer on `conn` (its request already written by the caller): the status line
/// and the headers, lowercased, and the body, read by `Content-Length`.
pub async fn answer_on<R>(conn: &mut R) -> (String, Vec<String>, String)
where
    R: tokio::io::AsyncBufRead + Unpin,
{
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};
    let (mut status, mut headers, mut length) = (String::new(), Vec::new(), 0usize);
    loop {
        let mut line = String::new();
        if conn.read_line(&mut line).await.unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        let line = line.trim_end().to_ascii_lowercase();
        if status.is_empty() {
            status = line;
            continue;
        }
        if let Some(v) = line.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap();
        }
        headers.push(line);
    }
    let mut body = vec![0u8; length];
    conn.read_exact(&mut body).await.unwrap();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

/// Sends `request` (`raw_request`) to the app on a connection of its own.
/// `hang_up_after: None` reads the answer and returns its status; `Some(hold)` keeps the
/// connection for `hold` without reading, then drops it: a client that goes away while
/// its request is being handled (the server drops the request's future). It returns the
/// status only if the answer had arrived before the hang-up.
pub async fn send_raw(t: &TestApp, request: &[u8], hang_up_after: Option<Duration>) -> Option<u16> {
    use futures::FutureExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = t.base.trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(request).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = match hang_up_after {
        None => conn.read(&mut answer).await.unwrap(),
        Some(hold) => {
            tokio::time::sleep(hold).await;
            // Only what has arrived: the runtime's last poll of the socket says so.
            conn.read(&mut answer).now_or_never()?.ok()?
        }
    };
    std::str::from_utf8(answer.get(9..12.min(n))?)
        .ok()?
        .parse()
        .ok()
}

/// Sends `requests` (`raw_request`), hanging up on each a little later than on the one
/// before, from 0 to 2.5 times `whole` (a whole request: `median_of_three`; the other
/// tests running beside one slow some requests down), and returns how many were answered
/// before their hang-up — some and not all, or the hang-ups did not span the request.
/// `pause` after each hang-up lets the work a request left running end before the next
/// request, where they would queue behind one another (one tenant-wide lock).
pub async fn hang_up_over(
    t: &TestApp,
    what: &str,
    (whole, pause): (Duration, Duration),
    requests: &[Vec<u8>],
) -> i64 {
    let cuts = requests.len() as u32;
    let mut answered = 0;
    for (i, request) in (0..cuts).zip(requests) {
        let hold = whole * 5 * i / (2 * cuts);
        answered += send_raw(t, request, Some(hold)).await.is_some() as i64;
        tokio::time::sleep(pause).await;
    }
    assert!(
        0 < answered && answered < cuts as i64,
        "{answered} of {cuts} cut {what} answered before the hang-up"
    );
    answered
}

/// Cuts `requests`, each with an `Idempotency-Key` of its own, over their whole length
/// (`hang_up_over`), then checks what a client that hung up may expect of its key:
/// within seconds no key is held `in_progress`, and the request retried with its key
/// answers `expected` — the first answer again, or the request run now if its key was
/// never claimed — never `409` (still in progress, or applied with its answer lost).
pub async fn retried_after_hang_ups(
    t: &TestApp,
    what: &str,
    whole: Duration,
    requests: &[Vec<u8>],
    expected: u16,
) {
    hang_up_over(t, what, (whole, Duration::ZERO), requests).await;
    eventually_explained(
        "no key held in progress",
        Duration::from_secs(10),
        async || {
            let held: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM idempotency_keys WHERE state = 'in_progress'",
            )
            .fetch_one(&t.db.owner)
            .await
            .unwrap();
            if held == 0 {
                Ok(())
            } else {
                Err(format!("{held} keys"))
            }
        },
    )
    .await;
    for (i, request) in requests.iter().enumerate() {
        let status = send_raw(t, request, None).await;
        assert_eq!(status, Some(expected), "retry of cut {what} {i}");
    }
}

/// Waits (10 s at most) until no change of standing is pending in `tenant`: every
/// announced change has ended (docs/auth-cache.md; the tenant's epoch in Redis).
pub async fn no_standing_change_pending(t: &TestApp, tenant: &str) {
    let key = chronicle::cache::standing::epoch_key(
        &t.app.state.config.redis_key_prefix,
        tenant.parse().unwrap(),
    );
    let mut redis = t.app.state.redis_conn.clone();
    let what = "every announced change of standing ended";
    eventually_explained(what, Duration::from_secs(10), async || {
        let pending: Option<i64> = redis::cmd("HGET")
            .arg(&key)
            .arg("pending")
            .query_async(&mut redis)
            .await
            .unwrap();
        match pending.unwrap_or(0) {
            0 => Ok(()),
            n => Err(format!("{n} changes pending")),
        }
    })
    .await
}

/// Makes every `UploadCompleted` append fail (a trigger on `events`), as if the process
/// died between an upload completion's two commits; `false` removes the trigger.
pub async fn refuse_upload_completions(db: &PgPool, refuse: bool) {
    let sql = if refuse {
        "CREATE FUNCTION refuse_completion() RETURNS trigger LANGUAGE plpgsql
           AS $$ BEGIN RAISE EXCEPTION 'the process died here'; END $$;
         CREATE TRIGGER refuse_completion BEFORE INSERT ON events FOR EACH ROW
           WHEN (NEW.event_type = 'UploadCompleted') EXECUTE FUNCTION refuse_completion();"
    } else {
        "DROP TRIGGER refuse_completion ON events; DROP FUNCTION refuse_completion();"
    };
    sqlx::raw_sql(sql).execute(db).await.unwrap();
}

/// How long a whole request takes here, to spread hang-ups over it: the median of three
/// requests that `prepare` makes (its own setup, e.g. creating an upload, not timed),
/// each sent and answered with status `expected`.
pub async fn median_of_three(
    t: &TestApp,
    expected: u16,
    mut prepare: impl AsyncFnMut(u8) -> Vec<u8>,
) -> Duration {
    let mut took = Vec::new();
    for i in 0..3u8 {
        let request = prepare(i).await;
        let started = std::time::Instant::now();
        assert_eq!(send_raw(t, &request, None).await, Some(expected));
        took.push(started.elapsed());
    }
    took.sort();
    took[1]
}

/// For the tests whose clients hang up on a completing upload: waits until every version
/// an upload committed (`Uploaded`) is recorded on its upload (`UploadCompleted`), then
/// checks that some of the `sent` uploads committed and some did not — the hang-ups
/// spanned the request, or they missed the window the test is about.
pub async fn every_committed_version_recorded_on_its_upload(owner: &PgPool, sent: i64) {
    let count = async |event_type: &str| -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = $1")
            .bind(event_type)
            .fetch_one(owner)
            .await
            .unwrap()
    };
    let versions = eventually_within(
        "every committed version recorded on its upload",
        Duration::from_secs(10),
        async || {
            let (versions, completed) = (count("Uploaded").await, count("UploadCompleted").await);
            (versions == completed).then_some(versions)
        },
    )
    .await;
    assert!(
        versions > 3 && versions < sent,
        "{versions} versions committed of {sent} uploads"
    );
}

/// Polls `check` until it holds (see `eventually_some`).
pub async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    eventually_some(what, async || check().await.then_some(())).await
}

impl TestApp {
    /// The `/metrics` text (Prometheus exposition).
    pub async fn metrics(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// `POST /v1/auth/register` with `body`, as sent.
    pub async fn register(&self, body: serde_json::Value) -> reqwest::Response {
        self.http
            .post(self.url("/v1/auth/register"))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Registers a new tenant `"{handle} inc"` whose admin is `{handle}@example.com`;
    /// returns the response body (`tenant_id`, `user_id`).
    pub async fn register_tenant(&self, handle: &str) -> serde_json::Value {
        let email = format!("{handle}@example.com");
        self.register_ok(
            serde_json::json!({"tenant_name": format!("{handle} inc"), "handle": handle,
            "name": handle, "email": email, "password": PASSWORD}),
        )
        .await
    }

    /// `POST /v1/auth/register` that must succeed (201); returns the body.
    pub async fn register_ok(&self, body: serde_json::Value) -> serde_json::Value {
        let r = self.register(body).await;
        assert_eq!(r.status(), reqwest::StatusCode::CREATED);
        r.json().await.unwrap()
    }

    /// `POST /v1/auth/login` with `PASSWORD` from a desktop browser.
    pub async fn login(&self, email: &str) -> reqwest::Response {
        self.login_as(email, BROWSER).await
    }

    /// `POST /v1/auth/login` with `PASSWORD` and the given user agent.
    pub async fn login_as(&self, email: &str, user_agent: &str) -> reqwest::Response {
        self.http
            .post(self.url("/v1/auth/login"))
            .header("user-agent", user_agent)
            .json(&serde_json::json!({"email": email, "password": PASSWORD}))
            .send()
            .await
            .unwrap()
    }

    /// A new tenant and its admin, signed in.
    pub async fn signup(&self, handle: &str) -> Client {
        let ids = self.register_tenant(handle).await;
        self.signed_in(&format!("{handle}@example.com"), &ids).await
    }

    /// Invites `handle` into the tenant of `admin_token` with `role`, registers them
    /// through the invitation and signs them in.
    pub async fn join(&self, admin_token: &str, handle: &str, role: &str) -> Client {
        let r = self
            .http
            .post(self.url("/v1/tenants/current/invitations"))
            .bearer_auth(admin_token)
            .json(&serde_json::json!({"role": role}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::CREATED, "invite {handle}");
        let invitation: serde_json::Value = r.json().await.unwrap();
        let email = format!("{handle}@example.com");
        let ids = self
            .register_ok(
                serde_json::json!({"invitation_token": invitation["invitation_token"],
                "handle": handle, "name": handle, "email": email, "password": PASSWORD}),
            )
            .await;
        self.signed_in(&email, &ids).await
    }

    /// Logs `email` in (it must succeed) as the user `ids` (a register response) names.
    pub async fn signed_in(&self, email: &str, ids: &serde_json::Value) -> Client {
        let r = self.login(email).await;
        assert_eq!(r.status(), reqwest::StatusCode::OK, "login {email}");
        let body: serde_json::Value = r.json().await.unwrap();
        Client {
            token: body["access_token"].as_str().unwrap().to_string(),
            tenant_id: ids["tenant_id"].as_str().unwrap().to_string(),
            user_id: ids["user_id"].as_str().unwrap().to_string(),
        }
    }

    /// `POST /v1/files` (multipart) of `bytes` named `name`, as answered.
    pub async fn upload(&self, c: &Client, name: &str, bytes: Vec<u8>) -> reqwest::Response {
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(bytes)
                .file_name(name.to_string())
                .mime_str("application/octet-stream")
                .unwrap(),
        );
        self.http
            .post(self.url("/v1/files"))
            .bearer_auth(&c.token)
            .multipart(form)
            .send()
            .await
            .unwrap()
    }

    /// An upload that must be accepted (202); returns its body.
    pub async fn upload_ok(&self, c: &Client, name: &str, bytes: Vec<u8>) -> serde_json::Value {
        let r = self.upload(c, name, bytes).await;
        assert_eq!(r.status(), reqwest::StatusCode::ACCEPTED);
        r.json().await.unwrap()
    }

    /// `POST /v1/files/{file_id}/versions` (multipart) of `bytes`, which must be accepted
    /// (202); returns the new version's number.
    pub async fn upload_version_ok(&self, c: &Client, file_id: &str, bytes: Vec<u8>) -> i32 {
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(bytes)
                .file_name("v.bin")
                .mime_str("application/octet-stream")
                .unwrap(),
        );
        let r = self
            .http
            .post(self.url(&format!("/v1/files/{file_id}/versions")))
            .bearer_auth(&c.token)
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::ACCEPTED);
        let body: serde_json::Value = r.json().await.unwrap();
        body["version_number"].as_i64().unwrap() as i32
    }

    /// `GET /v1/files/{file_id}/content` as `c`: the bytes served.
    pub async fn content(&self, c: &Client, file_id: &str) -> bytes::Bytes {
        self.http
            .get(self.url(&format!("/v1/files/{file_id}/content")))
            .bearer_auth(&c.token)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
    }

    /// Waits (60 s at most) until the version's status in the read table is settled
    /// (completed, duplicate, virus_failed or failed); returns it.
    pub async fn settled_status(&self, file_id: &str, version: i32) -> String {
        eventually_some(
            &format!("version {file_id}/{version} settles"),
            async || {
                let status: Option<String> = sqlx::query_scalar(
                    "SELECT status::text FROM file_versions WHERE file_id = $1::uuid AND version_number = $2",
                )
                .bind(file_id)
                .bind(version)
                .fetch_optional(&self.db.owner)
                .await
                .unwrap();
                status.filter(|s| {
                    ["completed", "duplicate", "virus_failed", "failed"].contains(&s.as_str())
                })
            },
        )
        .await
    }

    /// Every object file under the app's local storage root below `prefix`, relative,
    /// sorted.
    pub fn stored_objects(&self, prefix: &str) -> Vec<String> {
        let root = self.app.state.config.data_dir.join("objects").join(prefix);
        let mut out = Vec::new();
        let mut dirs = vec![root.clone()];
        while let Some(dir) = dirs.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let path = e.path();
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    out.push(path.strip_prefix(&root).unwrap().display().to_string());
                }
            }
        }
        out.sort();
        out
    }
}

/// The Playwright scripts (tests/browser), run with node.
pub fn browser_dir() -> &'static std::path::Path {
    std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser"))
}

/// node, `npm ci` in tests/browser and /usr/bin/chromium: required in CI (.ci/run
/// installs them), a loud skip elsewhere.
pub fn browser_available(test: &str) -> bool {
    let node = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let installed = browser_dir().join("node_modules/playwright-core").is_dir();
    let chromium = std::path::Path::new("/usr/bin/chromium").exists();
    let ready = node && installed && chromium;
    if !ready {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: node, tests/browser/node_modules and /usr/bin/chromium are required in CI"
        );
        eprintln!(
            "!!! SKIPPED {test}: needs node, `npm ci` in tests/browser and /usr/bin/chromium !!!"
        );
    }
    ready
}

/// `CLAMD_ADDR`, or `None` after a loud skip line (a failure when `CI` is set).
pub fn clamd_addr(test: &str) -> Option<String> {
    match std::env::var("CLAMD_ADDR") {
        Ok(addr) if !addr.trim().is_empty() => Some(addr),
        _ if std::env::var_os("CI").is_some() => {
            panic!("{test}: CLAMD_ADDR must be set in CI (.ci/run starts clamd)")
        }
        _ => {
            eprintln!(
                "!!! SKIPPED {test}: CLAMD_ADDR is not set; run scripts/start-clamd.sh and \
                 export CLAMD_ADDR=127.0.0.1:3310 to test against real ClamAV !!!"
            );
            None
        }
    }
}
