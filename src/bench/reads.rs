//! `chronicle bench reads`: authenticated reads beside the HTTP stack's own speed, in one
//! run. Four routes, each driven by 16 keep-alive connections for the same time:
//! `GET /health` (no authentication, no database: the limit), `GET /v1/files/{id}`,
//! `GET /v1/me` and `GET /v1/files?limit=20` as a signed-in user with 20 files.
//!
//! The routes take turns in slices of `SLICE_SECS` rather than one after the other, so
//! that a background burst on this shared machine (a checkpoint or autovacuum after the
//! event-store bench, a neighbour) falls on the limit and the reads alike instead of on
//! whichever route happened to run then: back to back, `GET /v1/files/{id}` measured
//! 41 % of `/health` in one run and 59-65 % in the two around it. A route's requests/s
//! is over all its slices' seconds, its p50 the median of theirs
//! and its p99 the highest slice's: an upper bound, since wrk reports percentiles, not
//! latencies.
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
/// Seconds of one turn of a route (the last turn may be shorter, never under one second).
const SLICE_SECS: u64 = 2;
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
    // The in-process server and its data directory, when this run starts one.
    let mut app = None;
    let addr: SocketAddr = match url {
        Some(url) => url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .context("--url must be http://<ip>:<port>")?,
        None => {
            let data_dir = super::work_dir::fresh().await?;
            let db_url = super::store::fresh_database(server_url, DATABASE).await?;
            let config = Config::from_lookup(|k| match k {
                "DATABASE_URL" => Some(db_url.clone()),
                "BIND_ADDR" => Some("127.0.0.1:0".into()),
                "DATA_DIR" => Some(data_dir.display().to_string()),
                // The limits would stop the benchmark; their Redis check is still paid.
                "RATE_LIMIT_PER_MINUTE" | "AUTH_RATE_LIMIT_PER_MINUTE" => {
                    Some(super::NO_RATE_LIMIT.into())
                }
                "REDIS_KEY_PREFIX" => Some(format!("bench-{}:", uuid::Uuid::now_v7().simple())),
                // Projectors on (the listing reads the files table), no worker: the
                // files stay `uploaded`, which does not change what a read costs.
                "WORKER_CONCURRENCY" => Some("0".into()),
                other => std::env::var(other).ok(),
            })?;
            let started = App::start(config, Mode::Serve).await?;
            let addr = started.addr.expect("serve mode listens");
            app = Some((started, data_dir));
            addr
        }
    };
    let outcome = measure(addr, secs).await;
    if let Some((app, data_dir)) = app {
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
    let routes = [
        (HEALTH, "/health", None),
        (FILE, file.as_str(), Some(token.as_str())),
        (ME, "/v1/me", Some(token.as_str())),
        (LIST, "/v1/files?limit=20", Some(token.as_str())),
    ];
    for (_, path, token) in routes {
        warm_up(addr, path, token).await?;
    }
    let slices = slices(secs);
    let mut measured: Vec<Vec<(u64, Measured)>> = routes.iter().map(|_| Vec::new()).collect();
    for &slice in &slices {
        for ((_, path, token), turns) in routes.iter().zip(&mut measured) {
            turns.push((slice, load(addr, path, *token, slice).await?));
        }
    }
    let combined: Vec<Measured> = measured.iter().map(|m| combine(m)).collect();
    let health = &combined[0];
    let how = format!(
        "{secs} s in {} turns with the other routes, {generator}",
        slices.len()
    );
    let mut rows = vec![Row {
        name: HEALTH,
        value: health.requests_per_sec,
        unit: "requests/s",
        note: format!(
            "p50 {:.2} ms, p99 {:.2} ms; {how}",
            health.p50_ms, health.p99_ms
        ),
    }];
    for ((name, _, _), m) in routes.iter().zip(&combined).skip(1) {
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

/// The lengths of a route's turns: `secs` in slices of `SLICE_SECS`, at least one second.
fn slices(secs: u64) -> Vec<u64> {
    let secs = secs.max(1);
    let mut slices = vec![SLICE_SECS; (secs / SLICE_SECS) as usize];
    if !secs.is_multiple_of(SLICE_SECS) {
        slices.push(secs % SLICE_SECS);
    }
    slices
}

/// One route's turns (`(seconds, figures)`) as one figure: requests/s over all its
/// seconds (each turn weighs by its length), median p50, highest p99.
fn combine(turns: &[(u64, Measured)]) -> Measured {
    let mut p50: Vec<f64> = turns.iter().map(|(_, m)| m.p50_ms).collect();
    p50.sort_by(f64::total_cmp);
    let secs: u64 = turns.iter().map(|(secs, _)| secs).sum();
    let requests: f64 = turns
        .iter()
        .map(|(secs, m)| *secs as f64 * m.requests_per_sec)
        .sum();
    Measured {
        requests_per_sec: requests / secs as f64,
        p50_ms: p50[p50.len() / 2],
        p99_ms: turns.iter().map(|(_, m)| m.p99_ms).fold(0.0, f64::max),
    }
}

/// One second of load on `path`, not counted: connections, caches and the server's
/// pools warmed before the first turn.
async fn warm_up(addr: SocketAddr, path: &str, token: Option<&str>) -> anyhow::Result<()> {
    load(addr, path, token, 1).await.map(drop)
}

/// `secs` of load on `path` from 16 connections.
async fn load(
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
    secs: u64,
) -> anyhow::Result<Measured> {
    if wrk_installed() {
        return wrk(addr, path, token, secs).await;
    }
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
    fn turns_cover_the_seconds_asked_for() {
        assert_eq!(slices(10), vec![2, 2, 2, 2, 2]);
        assert_eq!(slices(5), vec![2, 2, 1]);
        assert_eq!(slices(1), vec![1]);
        assert_eq!(slices(0), vec![1]);
    }

    #[test]
    fn turns_combine_into_mean_rate_median_p50_and_highest_p99() {
        let turn = |rps, p50_ms, p99_ms| Measured {
            requests_per_sec: rps,
            p50_ms,
            p99_ms,
        };
        let m = combine(&[
            (2, turn(100.0, 1.0, 3.0)),
            (2, turn(300.0, 2.0, 9.0)),
            (1, turn(600.0, 5.0, 4.0)),
        ]);
        // (200 + 600 + 600) requests in 5 s.
        assert_eq!(m.requests_per_sec, 280.0);
        assert_eq!(m.p50_ms, 2.0);
        assert_eq!(m.p99_ms, 9.0);
    }

    #[test]
    fn wrk_latencies_are_read_in_milliseconds() {
        let text =
            "  Latency Distribution\n     50%  512.00us\n     75%    1.20ms\n     99%    1.50s\n";
        assert_eq!(wrk_percentile(text, "50%").unwrap(), 0.512);
        assert_eq!(wrk_percentile(text, "99%").unwrap(), 1500.0);
        assert!(wrk_percentile(text, "90%").is_err());
    }
}
