//! `chronicle bench reads`: authenticated reads beside the HTTP stack's own speed, in one
//! run. Four routes, each driven by 16 keep-alive connections for the same time:
//! `GET /health` (no authentication, no database: the limit), then `GET /v1/files/{id}`,
//! `GET /v1/me` and `GET /v1/files?limit=20` as a signed-in user with 20 files.
//!
//! The load comes from `wrk` (`-t2 -c16 --latency`) when it is installed, else from an
//! in-process generator with the same settings (16 connections, HTTP/1.1 keep-alive,
//! every latency recorded); each row says which. The server runs in this process
//! (`serve`, projectors on, no worker) on a throwaway database, unless `--url` names
//! one already running — how the figures of another build are taken with the same
//! client (that server needs a rate limit high enough for the run).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::store::Row;
use super::upload::http::Conn;
use crate::app::{App, Mode};
use crate::config::Config;

const CONNECTIONS: usize = 16;
const FILES: usize = 20;
const PASSWORD: &str = "correct horse battery staple";
const DATABASE: &str = "chronicle_bench_reads";

/// One route's figures.
struct Measured {
    requests_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// The rows' names, which `bench all` looks up.
pub const HEALTH: &str = "limit: GET /health, 16 connections";
pub const FILE: &str = "GET /v1/files/{id}, 16 connections";
pub const ME: &str = "GET /v1/me, 16 connections";
pub const LIST: &str = "GET /v1/files?limit=20, 16 connections";

pub async fn run(server_url: &str, url: Option<&str>, secs: u64) -> anyhow::Result<Vec<Row>> {
    let data_dir = super::work_dir::fresh().await?;
    let mut app = None;
    let addr: SocketAddr = match url {
        Some(url) => url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .context("--url must be http://<ip>:<port>")?,
        None => {
            let db_url = super::store::fresh_database(server_url, DATABASE).await?;
            let config = Config::from_lookup(|k| match k {
                "DATABASE_URL" => Some(db_url.clone()),
                "BIND_ADDR" => Some("127.0.0.1:0".into()),
                "DATA_DIR" => Some(data_dir.display().to_string()),
                // The limits would stop the benchmark; their Redis check is still paid.
                "RATE_LIMIT_PER_MINUTE" | "AUTH_RATE_LIMIT_PER_MINUTE" => Some("1000000".into()),
                "REDIS_KEY_PREFIX" => Some(format!("bench-{}:", uuid::Uuid::now_v7().simple())),
                // Projectors on (the listing reads the files table), no worker: the
                // files stay `uploaded`, which does not change what a read costs.
                "WORKER_CONCURRENCY" => Some("0".into()),
                other => std::env::var(other).ok(),
            })?;
            let started = App::start(config, Mode::Serve).await?;
            let addr = started.addr.expect("serve mode listens");
            app = Some(started);
            addr
        }
    };
    let outcome = measure(addr, secs).await;
    if let Some(app) = app {
        app.stop().await;
        let _ = tokio::fs::remove_dir_all(&data_dir).await;
        super::store::drop_database(server_url, DATABASE).await?;
    }
    outcome
}

async fn measure(addr: SocketAddr, secs: u64) -> anyhow::Result<Vec<Row>> {
    let token = signup(addr).await?;
    let mut conn = Conn::open(addr).await?;
    let mut file_id = String::new();
    for i in 0..FILES {
        let r = conn
            .upload(&token, &format!("bench-{i}.bin"), 1024, |o, b| {
                b.fill((o % 251) as u8 ^ i as u8)
            })
            .await?;
        anyhow::ensure!(r.status == 202, "upload answered {}: {}", r.status, r.body);
        file_id = r.json()?["file_id"]
            .as_str()
            .context("no file_id")?
            .to_string();
    }
    // The projector has caught up when the listing shows every file.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = conn
            .request("GET", "/v1/files?limit=20", Some(&token), "")
            .await?;
        if r.status == 200 && r.json()?["items"].as_array().map(Vec::len) == Some(FILES) {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "the files were not projected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let file = format!("/v1/files/{file_id}");
    let generator = if wrk_installed() {
        "wrk -t2 -c16"
    } else {
        "in-process, 16 connections"
    };
    let health = load(addr, "/health", None, secs).await?;
    let mut rows = vec![Row {
        name: HEALTH,
        value: health.requests_per_sec,
        unit: "requests/s",
        note: format!(
            "p50 {:.2} ms, p99 {:.2} ms; {secs} s, {generator}",
            health.p50_ms, health.p99_ms
        ),
    }];
    for (name, path) in [
        (FILE, file.as_str()),
        (ME, "/v1/me"),
        (LIST, "/v1/files?limit=20"),
    ] {
        let m = load(addr, path, Some(&token), secs).await?;
        rows.push(Row {
            name,
            value: m.requests_per_sec,
            unit: "requests/s",
            note: format!(
                "{:.0} % of /health; p50 {:.2} ms, p99 {:.2} ms; target >= 40 %, p99 <= 10 ms",
                100.0 * m.requests_per_sec / health.requests_per_sec,
                m.p50_ms,
                m.p99_ms
            ),
        });
    }
    Ok(rows)
}

async fn signup(addr: SocketAddr) -> anyhow::Result<String> {
    let mut conn = Conn::open(addr).await?;
    let email = format!("reads-{}@example.com", uuid::Uuid::now_v7().simple());
    let register = format!(
        r#"{{"tenant_name":"bench","handle":"bench","name":"Bench","email":"{email}","password":"{PASSWORD}"}}"#
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
    let login = format!(r#"{{"email":"{email}","password":"{PASSWORD}"}}"#);
    let r = conn.request("POST", "/v1/auth/login", None, &login).await?;
    anyhow::ensure!(r.status == 200, "login answered {}: {}", r.status, r.body);
    Ok(r.json()?["access_token"]
        .as_str()
        .context("login gave no access_token")?
        .to_string())
}

fn wrk_installed() -> bool {
    std::process::Command::new("wrk")
        .arg("--version")
        .output()
        .is_ok()
}

/// `secs` of load on `path` from 16 connections, after a one-second warm-up.
async fn load(
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
    secs: u64,
) -> anyhow::Result<Measured> {
    if wrk_installed() {
        wrk(addr, path, token, 1).await?;
        return wrk(addr, path, token, secs).await;
    }
    in_process(addr, path, token, 1).await?;
    in_process(addr, path, token, secs).await
}

async fn wrk(
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
    secs: u64,
) -> anyhow::Result<Measured> {
    let mut command = tokio::process::Command::new("wrk");
    command.args(["-t2", "-c16", "--latency", &format!("-d{secs}s")]);
    if let Some(token) = token {
        command.args(["-H", &format!("Authorization: Bearer {token}")]);
    }
    let output = command.arg(format!("http://{addr}{path}")).output().await?;
    let text = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(output.status.success(), "wrk failed: {text}");
    // Anything but 2xx (a 401, a 429) would measure the wrong thing.
    anyhow::ensure!(
        !text.contains("Non-2xx"),
        "GET {path} answered errors under load: {text}"
    );
    let rate = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .context("wrk printed no Requests/sec")?;
    Ok(Measured {
        requests_per_sec: rate.trim().parse()?,
        p50_ms: wrk_percentile(&text, "50%")?,
        p99_ms: wrk_percentile(&text, "99%")?,
    })
}

/// A line of wrk's `Latency Distribution`, e.g. `     99%    3.21ms`, in milliseconds.
fn wrk_percentile(text: &str, label: &str) -> anyhow::Result<f64> {
    let value = text
        .lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .with_context(|| format!("wrk printed no {label} latency"))?
        .trim();
    let split = value
        .find(|c: char| c.is_ascii_alphabetic())
        .context("a latency without a unit")?;
    let (number, unit) = value.split_at(split);
    let number: f64 = number.parse()?;
    Ok(match unit {
        "us" => number / 1e3,
        "ms" => number,
        "s" => number * 1e3,
        "m" => number * 60e3,
        other => anyhow::bail!("unknown latency unit {other}"),
    })
}

/// The same load without wrk: 16 keep-alive connections in this process.
async fn in_process(
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
    secs: u64,
) -> anyhow::Result<Measured> {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let (stop, path, token) = (stop.clone(), path.to_string(), token.map(str::to_string));
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(addr).await?;
            let mut latencies = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let sent = Instant::now();
                let r = conn.request("GET", &path, token.as_deref(), "").await?;
                anyhow::ensure!(r.status == 200, "GET {path} answered {}", r.status);
                latencies.push(sent.elapsed().as_secs_f64() * 1e3);
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    let at = |p: usize| all[(all.len() * p / 100).min(all.len().saturating_sub(1))];
    anyhow::ensure!(!all.is_empty(), "no request completed");
    Ok(Measured {
        requests_per_sec: all.len() as f64 / elapsed,
        p50_ms: at(50),
        p99_ms: at(99),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_latencies_are_read_in_milliseconds() {
        let text =
            "  Latency Distribution\n     50%  512.00us\n     75%    1.20ms\n     99%    1.50s\n";
        assert_eq!(wrk_percentile(text, "50%").unwrap(), 0.512);
        assert_eq!(wrk_percentile(text, "99%").unwrap(), 1500.0);
        assert!(wrk_percentile(text, "90%").is_err());
    }
}
