//! The server under test as a child process (`chronicle serve|web`), so its resident
//! memory is its own and not the benchmark client's buffers.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use super::http::Conn;

/// How long a child may take to migrate, bind and answer `/health/ready`.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a child may take to finish in-flight work after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

pub struct ServerProcess {
    child: Child,
    pid: u32,
    pub addr: SocketAddr,
    drain: JoinHandle<()>,
}

impl ServerProcess {
    /// Starts `exe subcommand` with exactly `env` (plus PATH): the bench's configuration,
    /// not whatever the caller's shell exports. Its output goes to `log`.
    pub async fn start(
        exe: &Path,
        subcommand: &str,
        env: &[(&str, String)],
        log: PathBuf,
    ) -> anyhow::Result<Self> {
        let mut command = Command::new(exe);
        command
            .arg(subcommand)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            // An error anywhere in the bench must not leave a server running.
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start {}", exe.display()))?;
        let pid = child.id().context("the server exited at once")?;
        let stdout = child.stdout.take().context("no stdout pipe")?;
        let mut lines = BufReader::new(stdout).lines();
        let mut out = tokio::fs::File::create(log.with_extension("stdout.log")).await?;
        let addr = tokio::time::timeout(START_TIMEOUT, async {
            while let Some(line) = lines.next_line().await? {
                out.write_all(line.as_bytes()).await?;
                out.write_all(b"\n").await?;
                if let Some(a) = line.trim().strip_prefix("chronicle listening on http://") {
                    return Ok::<_, anyhow::Error>(a.parse::<SocketAddr>()?);
                }
            }
            anyhow::bail!("the server exited before listening (see {})", log.display())
        })
        .await
        .context("the server did not start listening in time")??;
        // Logs go to stdout: keep the pipe drained or the server would block on a full one.
        let drain = tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = out.write_all(line.as_bytes()).await;
                let _ = out.write_all(b"\n").await;
            }
        });
        let server = Self {
            child,
            pid,
            addr,
            drain,
        };
        server.wait_ready().await?;
        Ok(server)
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let mut conn = Conn::open(self.addr).await?;
            if conn.request("GET", "/health/ready", None, "").await?.status == 200 {
                return Ok(());
            }
            anyhow::ensure!(Instant::now() < deadline, "the server never became ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Current resident set size in bytes (`VmRSS` of /proc/<pid>/status).
    pub fn rss(&self) -> anyhow::Result<u64> {
        rss_of(self.pid)
    }

    /// Samples RSS every `every` into a running peak until the sampler is dropped.
    pub fn sample_rss(&self, every: Duration) -> RssSampler {
        let peak = Arc::new(AtomicU64::new(0));
        let (pid, shared) = (self.pid, peak.clone());
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                if let Ok(rss) = rss_of(pid) {
                    shared.fetch_max(rss, Ordering::Relaxed);
                }
            }
        });
        RssSampler { peak, task }
    }

    /// SIGTERM (the server's graceful shutdown), then a kill if it does not finish.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        // std has no portable SIGTERM and the crate forbids unsafe: use kill(1).
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status()
            .await;
        if tokio::time::timeout(STOP_TIMEOUT, self.child.wait())
            .await
            .is_err()
        {
            self.child.kill().await?;
        }
        self.drain.abort();
        Ok(())
    }
}

pub struct RssSampler {
    peak: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl RssSampler {
    /// The highest RSS seen since the last call (or since sampling began).
    pub fn take_peak(&self) -> u64 {
        self.peak.swap(0, Ordering::Relaxed)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn rss_of(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .context("no VmRSS in /proc/<pid>/status")?;
    Ok(kib * 1024)
}
