//! Test fixtures: every test gets its own freshly migrated database (dropped afterwards),
//! so the suite runs in parallel against the real Postgres and Redis.

use std::collections::HashMap;
use std::path::PathBuf;

use chronicle::app::{App, Mode};
use chronicle::config::Config;
use chronicle::db::{self, DbRole};
use sqlx::PgPool;

pub fn base_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/postgres".into())
}

pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

pub struct TestDb {
    pub name: String,
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
        init_tracing();
        let name = format!("chronicle_test_{}", uuid::Uuid::now_v7().simple());
        let base = base_url();
        let url = match base.rsplit_once('/') {
            Some((prefix, _)) => format!("{prefix}/{name}"),
            None => panic!("TEST_DATABASE_URL must end with /<database>"),
        };
        db::migrate(&url).await.expect("migrate test database");
        let owner = db::pool(&url, DbRole::Owner, 4).await.unwrap();
        let app = db::pool(&url, DbRole::App, 8).await.unwrap();
        let worker = db::pool(&url, DbRole::Worker, 8).await.unwrap();
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
    ]);
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
