//! Chronicle as a separate OS process (the real binary), for what an in-process app
//! cannot show: SIGKILL of a worker, the server's own memory use.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Process {
    child: Child,
    /// Where its output goes (shown when a test fails).
    pub log: std::path::PathBuf,
}

impl Process {
    /// Runs `chronicle <args>` with `env` on top of the test's environment.
    pub fn spawn(args: &[&str], env: &[(&str, String)], log_dir: &Path) -> Process {
        let log = log_dir.join(format!("process-{}.log", uuid::Uuid::now_v7().simple()));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_chronicle"))
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .expect("the chronicle binary starts");
        Process { child, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no shutdown, no cleanup, whatever it was doing.
    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGSTOP: frozen where it stands (its connections open, nothing acknowledged or
    /// sent) until [`Process::resume`] or a kill.
    pub fn freeze(&self) {
        self.signal(rustix::process::Signal::STOP);
    }

    /// SIGCONT after [`Process::freeze`].
    pub fn resume(&self) {
        self.signal(rustix::process::Signal::CONT);
    }

    fn signal(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.pid() as i32).expect("a child's pid");
        rustix::process::kill_process(pid, signal).expect("the child takes the signal");
    }

    /// Resident set size in KiB (Linux).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `base/health/ready` until it answers 200.
pub async fn wait_ready(http: &reqwest::Client, base: &str, process: &Process) {
    crate::common::eventually_explained(
        "the server is ready",
        Duration::from_secs(60),
        async || match http.get(format!("{base}/health/ready")).send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            _ => Err(process.output()),
        },
    )
    .await;
}
