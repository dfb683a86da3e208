//! `chronicle bench upload` (issue 4, "Performance"): one large upload over loopback
//! beside `sha256sum` of the same bytes with the server's RSS sampled; many small
//! uploads from 16 clients, accepted and completed end to end; `GET /v1/files/{id}`
//! latency at 16 clients with the cache on and off. The server runs as a child process
//! (`serve`, then `web`) on a throwaway database, so its memory is measured alone; the
//! small uploads are sent again to the API alone (`web`), their ratio's ceiling.

pub(super) mod http;
mod large;
mod limit;
mod server;
mod small;
mod tus;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use self::http::Conn;
use self::large::large_upload;
pub(super) use self::limit::NAME as INGESTION_LIMIT;
use self::limit::ingestion_limit;
use self::server::ServerProcess;
pub(super) use self::small::{ACCEPTED, API_ALONE, COMPLETED};
use self::small::{get_latencies, small_uploads};
use self::tus::tus_upload;
use super::store::Row;
use crate::db::{self, DbRole};

const CLIENTS: usize = 16;
const RSS_EVERY: Duration = Duration::from_millis(20);
/// A run that has not settled by then is broken, not slow: the bench stops by itself.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(600);
const MIB: f64 = 1024.0 * 1024.0;
const PASSWORD: &str = "correct horse battery staple";

/// How much work each part does (the smoke test runs the same path, tiny).
#[derive(Debug, Clone)]
pub struct Sizes {
    /// 0: no large and no tus upload.
    pub large_bytes: u64,
    pub small_uploads: usize,
    pub small_bytes: usize,
    /// Measured `GET /v1/files/{id}` requests per cache setting (after one warm-up
    /// pass); 0: no reads.
    pub gets: usize,
    pub worker_concurrency: usize,
}

impl Sizes {
    /// Only the small uploads and their ingestion limit (`bench upload --small-only`).
    pub const SMALL_ONLY: Sizes = Sizes {
        large_bytes: 0,
        gets: 0,
        ..Sizes::ISSUE
    };

    /// Only the large upload, as multipart and as tus (`bench upload --large-only`): the
    /// tus/multipart ratio without the small uploads and the reads.
    pub const LARGE_ONLY: Sizes = Sizes {
        small_uploads: 0,
        gets: 0,
        ..Sizes::ISSUE
    };

    /// What issue 4 asks for.
    pub const ISSUE: Sizes = Sizes {
        large_bytes: 1024 * 1024 * 1024,
        small_uploads: 1_000,
        small_bytes: 10 * 1024,
        gets: 20_000,
        // The default: the pipeline must keep pace as shipped, not tuned for the bench.
        worker_concurrency: crate::config::DEFAULT_WORKER_CONCURRENCY,
    };
}

/// Where the bench's server and scratch files live.
pub struct Target<'a> {
    /// `DATABASE_URL` of the server; the bench creates and drops `database` there.
    pub server_url: &'a str,
    pub database: &'a str,
    pub redis_url: &'a str,
    /// The chronicle binary to run as the server.
    pub exe: &'a Path,
}

pub struct Outcome {
    pub rows: Vec<Row>,
    pub large_completed: bool,
    /// The server's SHA-256 of the large upload equals `sha256sum`'s.
    pub large_sha_matches: bool,
    /// The same bytes uploaded with tus completed with the same SHA-256.
    pub tus_matches: bool,
    pub small_accepted: usize,
    pub small_completed: usize,
}

pub async fn run(target: &Target<'_>, sizes: &Sizes) -> anyhow::Result<Outcome> {
    let url = super::store::fresh_database(target.server_url, target.database).await?;
    db::migrate(&url).await?;
    let work = super::work_dir::fresh().await?;
    // Every server of this run writes under `bench-<run>-…:`, removed at the end.
    let run_id = uuid::Uuid::now_v7().simple().to_string();
    let result = run_in(target, sizes, &url, &work, &run_id).await;
    if let Err(err) = forget_redis_keys(target.redis_url, &run_id).await {
        eprintln!("could not remove the bench's Redis keys: {err:#}");
    }
    // Keep the server logs of a failed run (they say why) and of a diagnosed one.
    if result.is_ok() && server_log_filter().is_none() {
        let _ = tokio::fs::remove_dir_all(&work).await;
    } else {
        eprintln!("server logs kept in {}", work.display());
    }
    super::store::drop_database(target.server_url, target.database).await?;
    result
}

async fn run_in(
    target: &Target<'_>,
    sizes: &Sizes,
    url: &str,
    work: &Path,
    run_id: &str,
) -> anyhow::Result<Outcome> {
    let owner = db::pool(url, DbRole::Owner, 2).await?;
    let env = ServerEnv {
        database_url: url.to_string(),
        redis_url: target.redis_url.to_string(),
        data_dir: work.join("data"),
        jwt_secret: format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        ),
        max_upload: sizes.large_bytes.max(1024 * 1024),
        run_id: run_id.to_string(),
    };
    let serve_env = env.vars("300", sizes.worker_concurrency);
    let server =
        ServerProcess::start(target.exe, "serve", &serve_env, work.join("serve.log")).await?;
    let token = signup(server.addr).await?;
    let mut rows = Vec::new();

    // (large SHA-256 matches, tus completed with the same SHA-256), when asked for.
    let mut large_ok = None;
    if sizes.large_bytes > 0 {
        let large = large_upload(&server, &owner, &token, sizes.large_bytes, work).await?;
        rows.extend(large.rows);
        let tus = tus_upload(&server, &owner, &token, sizes.large_bytes).await?;
        rows.extend(tus.rows);
        rows.push(Row {
            name: "tus / multipart",
            value: 100.0 * tus.rate / large.rate,
            unit: "%",
            note: "tus MB/s over the multipart upload's in this run; target >= 80 %".into(),
        });
        large_ok = Some((
            large.completed,
            large.sha_matches,
            tus.completed && tus.sha256 == large.sha256,
        ));
    }
    let small = if sizes.small_uploads > 0 {
        // The limit right before the uploads it bounds, on the same machine in the same minute.
        let limit = ingestion_limit(
            url,
            &work.join("limit"),
            sizes.small_uploads,
            sizes.small_bytes,
        )
        .await?;
        small_uploads(&server, &owner, &token, sizes, limit).await?
    } else {
        small::SmallResult::default()
    };
    let limit = small.rows.iter().find(|r| r.name == INGESTION_LIMIT);
    let limit = limit.map(|r| r.value);
    rows.extend(small.rows);
    server.stop().await?;

    // The same burst against the API alone, beside the same limit: the ceiling of the
    // small-upload ratio on a machine that also projects and processes.
    if let Some(limit) = limit {
        let log = work.join("web-api-alone.log");
        let web = ServerProcess::start(target.exe, "web", &env.vars("300", 0), log).await?;
        rows.extend(small::api_alone(&web, &token, sizes, limit).await?);
        web.stop().await?;
    }

    // Reads on a `web` server (no worker competing), first with the cache, then without.
    let ids = Arc::new(small.file_ids);
    let reads = [
        ("300", "GET /v1/files/{id}, 16 clients, cache on"),
        ("0", "GET /v1/files/{id}, 16 clients, cache off"),
    ];
    for (ttl, name) in reads.into_iter().filter(|_| sizes.gets > 0) {
        let log = work.join(format!("web-ttl{ttl}.log"));
        let web = ServerProcess::start(target.exe, "web", &env.vars(ttl, 0), log).await?;
        get_latencies(web.addr, &token, &ids, ids.len()).await?; // warm-up pass
        let started = Instant::now();
        let mut ms = get_latencies(web.addr, &token, &ids, sizes.gets).await?;
        let elapsed = started.elapsed();
        web.stop().await?;
        ms.sort_by(f64::total_cmp);
        rows.push(Row {
            name,
            value: percentile(&ms, 50),
            unit: "ms (p50)",
            note: format!(
                "p99 {:.2} ms; {:.0} requests/s; {} requests over {} files (FILE_CACHE_TTL_SECS={ttl})",
                percentile(&ms, 99),
                ms.len() as f64 / elapsed.as_secs_f64(),
                ms.len(),
                ids.len()
            ),
        });
    }
    owner.close().await;
    Ok(Outcome {
        rows,
        large_completed: large_ok.is_some_and(|(completed, _, _)| completed),
        large_sha_matches: large_ok.is_some_and(|(_, matches, _)| matches),
        tus_matches: large_ok.is_some_and(|(_, _, tus)| tus),
        small_accepted: ids.len(),
        small_completed: small.completed,
    })
}

/// The server's environment: complete, so the caller's shell cannot change the setup.
struct ServerEnv {
    database_url: String,
    redis_url: String,
    data_dir: PathBuf,
    jwt_secret: String,
    max_upload: u64,
    run_id: String,
}

impl ServerEnv {
    fn vars(&self, cache_ttl: &str, worker_concurrency: usize) -> Vec<(&'static str, String)> {
        vec![
            ("APP_ENV", "local".into()),
            ("DATABASE_URL", self.database_url.clone()),
            ("REDIS_URL", self.redis_url.clone()),
            ("BIND_ADDR", "127.0.0.1:0".into()),
            ("DATA_DIR", self.data_dir.display().to_string()),
            // One prefix per server: the cache-off run must not read the cache-on run's keys.
            (
                "REDIS_KEY_PREFIX",
                format!(
                    "bench-{}-{}:",
                    self.run_id,
                    &uuid::Uuid::new_v4().simple().to_string()[..8]
                ),
            ),
            ("JWT_SECRET", self.jwt_secret.clone()),
            ("WORKER_CONCURRENCY", worker_concurrency.to_string()),
            ("SCANNER", "builtin".into()),
            ("MAX_UPLOAD_BYTES", self.max_upload.to_string()),
            ("FILE_CACHE_TTL_SECS", cache_ttl.into()),
            // The limits would stop the benchmark itself; their cost is still paid.
            ("RATE_LIMIT_PER_MINUTE", super::NO_RATE_LIMIT.into()),
            ("AUTH_RATE_LIMIT_PER_MINUTE", super::NO_RATE_LIMIT.into()),
            // Per-request info logs would be part of the measurement; production filters too.
            // `BENCH_SERVER_RUST_LOG` overrides it to diagnose a run (e.g.
            // `warn,chronicle::tus::phases=debug` for where each PATCH's time goes,
            // `warn,sqlx::query=debug` to count statements); the run's logs are then kept.
            (
                "RUST_LOG",
                server_log_filter().unwrap_or_else(|| "warn".into()),
            ),
        ]
    }
}

/// The server's `RUST_LOG` asked for with `BENCH_SERVER_RUST_LOG`, if any.
fn server_log_filter() -> Option<String> {
    std::env::var("BENCH_SERVER_RUST_LOG")
        .ok()
        .filter(|f| !f.is_empty())
}

/// Deletes the keys (queue streams, cache generations) this run's servers left in Redis.
async fn forget_redis_keys(redis_url: &str, run_id: &str) -> anyhow::Result<()> {
    let client = redis::Client::open(redis_url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("bench-{run_id}-*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            redis::cmd("DEL")
                .arg(&keys)
                .query_async::<()>(&mut conn)
                .await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

async fn signup(addr: std::net::SocketAddr) -> anyhow::Result<String> {
    let mut conn = Conn::open(addr).await?;
    let register = format!(
        r#"{{"tenant_name":"bench","handle":"bench","name":"Bench","email":"bench@example.com","password":"{PASSWORD}"}}"#
    );
    let r = conn
        .request("POST", "/v1/auth/register", None, &register)
        .await?;
    anyhow::ensure!(
        r.status == 201,
        "register answered {}: {}",
        r.status,
        r.body
    );
    let login = format!(r#"{{"email":"bench@example.com","password":"{PASSWORD}"}}"#);
    let r = conn.request("POST", "/v1/auth/login", None, &login).await?;
    anyhow::ensure!(r.status == 200, "login answered {}: {}", r.status, r.body);
    Ok(r.json()?["access_token"]
        .as_str()
        .context("login gave no access_token")?
        .to_string())
}

/// Deterministic, incompressible-looking bytes: a 1 MiB xorshift block repeated. Cheap
/// enough (a memcpy) that the generator never limits the upload.
struct Pattern(Vec<u8>);

impl Pattern {
    fn new() -> Self {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let block = (0..(1 << 20) / 8)
            .flat_map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes()
            })
            .collect();
        Self(block)
    }

    fn fill(&self, offset: u64, out: &mut [u8]) {
        let mut at = (offset % self.0.len() as u64) as usize;
        let mut done = 0;
        while done < out.len() {
            let n = (self.0.len() - at).min(out.len() - done);
            out[done..done + n].copy_from_slice(&self.0[at..at + n]);
            done += n;
            at = 0;
        }
    }
}

fn percentile(sorted: &[f64], p: usize) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}
