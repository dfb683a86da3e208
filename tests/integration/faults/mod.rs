//! Faults as tests, with the real binary (issue 11): dependencies stopped (own Postgres
//! cluster, own Redis server: tests/integration/services.rs), the API killed mid-upload,
//! Redis flushed with jobs queued. Afterwards every acknowledged (202) upload is
//! `completed` exactly once and nothing is left in `tmp/`. The worker killed mid-job is
//! `out_of_process::a_worker_killed_mid_job_is_replaced_and_the_job_completes_exactly_once`.
//!
//! `outages`: fast 503s while Postgres or Redis is down, and recovery without a restart.
//! `crash`: kill -9 of the API mid-upload; the sweeper removes the partial bytes and
//! nothing of acknowledged or unfinished (tus) uploads.
//! `load`: Postgres stopped mid-load; Redis flushed with jobs queued.

mod crash;
mod load;
mod outages;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::process::{Process, free_port, wait_ready};

pub const SECRET: &str = "fa17fa17fa17fa17fa17fa17fa17fa17fa17fa17fa17fa17fa17fa17fa17fa17";
use crate::common::{PASSWORD, eventually_explained};

/// Where a set of Chronicle processes keep their state: they share all of it.
pub struct Deployment {
    pub database_url: String,
    pub redis_url: String,
    pub redis_prefix: String,
    pub data_dir: PathBuf,
}

impl Deployment {
    /// The environment of one process; `extra` on top.
    fn env(&self, extra: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("DATABASE_URL", self.database_url.clone()),
            ("REDIS_URL", self.redis_url.clone()),
            ("REDIS_KEY_PREFIX", self.redis_prefix.clone()),
            ("DATA_DIR", self.data_dir.display().to_string()),
            ("JWT_SECRET", SECRET.to_string()),
            ("RATE_LIMIT_PER_MINUTE", "1000000".into()),
            ("AUTH_RATE_LIMIT_PER_MINUTE", "100000".into()),
            ("LOG_FORMAT", "json".into()),
            // Retries and re-enqueues within the tests' deadlines.
            ("JOB_BACKOFF_BASE_MS", "200".into()),
            ("JOB_RECONCILE_SECS", "1".into()),
            ("JOB_VISIBILITY_TIMEOUT_SECS", "5".into()),
        ];
        for (k, v) in extra {
            env.retain(|(key, _)| key != k);
            env.push((k, v.clone()));
        }
        env
    }

    /// `chronicle serve|web` on a free port, ready (Postgres, Redis and storage up).
    pub async fn start_http(&self, mode: &str, extra: &[(&'static str, String)]) -> Chronicle {
        let port = free_port();
        let mut env = self.env(extra);
        env.push(("BIND_ADDR", format!("127.0.0.1:{port}")));
        let process = Process::spawn(&[mode], &env, &self.data_dir);
        let chronicle = Chronicle {
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            process,
        };
        wait_ready(&chronicle.http, &chronicle.base, &chronicle.process).await;
        chronicle
    }

    /// `chronicle worker` (no HTTP).
    pub fn start_worker(&self, extra: &[(&'static str, String)]) -> Process {
        Process::spawn(&["worker"], &self.env(extra), &self.data_dir)
    }

    /// Every file under `objects/tmp`, staging files included.
    pub fn temp_files(&self) -> Vec<PathBuf> {
        files_under(&self.data_dir.join("objects").join("tmp"))
    }
}

pub fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// A running Chronicle with an HTTP API.
pub struct Chronicle {
    pub base: String,
    pub http: reqwest::Client,
    pub process: Process,
}

impl Chronicle {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Registers a tenant and its admin, logs in; returns the access token.
    pub async fn account(&self, handle: &str) -> String {
        let email = format!("{handle}@example.com");
        let r = self.http.post(self.url("/v1/auth/register"))
            .json(&json!({"tenant_name": format!("{handle} inc"), "handle": handle, "name": handle, "email": email, "password": PASSWORD}))
            .send().await.unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "{}", self.process.output());
        let r = self.login(handle).await;
        assert_eq!(r.status(), StatusCode::OK);
        let body: Value = r.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_string()
    }

    pub async fn login(&self, handle: &str) -> reqwest::Response {
        self.http
            .post(self.url("/v1/auth/login"))
            .json(&json!({"email": format!("{handle}@example.com"), "password": PASSWORD}))
            .send()
            .await
            .unwrap()
    }

    /// A multipart upload of a new file.
    pub async fn upload(
        &self,
        token: &str,
        name: &str,
        bytes: Vec<u8>,
    ) -> reqwest::Result<reqwest::Response> {
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(bytes)
                .file_name(name.to_string())
                .mime_str("application/octet-stream")
                .unwrap(),
        );
        self.http
            .post(self.url("/v1/files"))
            .bearer_auth(token)
            .multipart(form)
            .send()
            .await
    }
}

/// An acknowledged upload: the 202's file and version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub file_id: String,
    pub version: i32,
}

impl Ack {
    pub async fn from_response(r: reqwest::Response) -> Ack {
        let body: Value = r.json().await.unwrap();
        Ack {
            file_id: body["file_id"].as_str().unwrap().to_string(),
            version: body["version_number"].as_i64().unwrap() as i32,
        }
    }
}

/// Bytes unique to `seed` (no two uploads deduplicate into one another).
pub fn unique_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    out.extend_from_slice(&seed.to_le_bytes());
    out.extend((0..len).map(|i| (i as u64).wrapping_mul(2_654_435_761).wrapping_add(seed) as u8));
    out
}

/// Every acknowledged upload ends `completed`, exactly once: one version per
/// acknowledgement, one `VersionCompleted` each; and `tmp/` ends empty but for
/// `keep` (unfinished resumable uploads). Polls up to `within`.
pub async fn assert_completed_exactly_once(
    owner: &PgPool,
    deployment: &Deployment,
    acks: &[Ack],
    keep: &[PathBuf],
    within: Duration,
    logs: &dyn Fn() -> String,
) {
    let deadline = Instant::now() + within;
    let left = || deadline.saturating_duration_since(Instant::now());
    for ack in acks {
        eventually_explained("the acknowledged upload completed", left(), async || {
            let status: Option<String> = sqlx::query_scalar(
                "SELECT status::text FROM file_versions
                  WHERE file_id = $1::uuid AND version_number = $2",
            )
            .bind(&ack.file_id)
            .bind(ack.version)
            .fetch_optional(owner)
            .await
            .unwrap();
            if status.as_deref() == Some("completed") {
                return Ok(());
            }
            Err(format!("{ack:?}: {status:?}\n{}", logs()))
        })
        .await;
    }
    for ack in acks {
        let versions: i64 =
            sqlx::query_scalar("SELECT count(*) FROM file_versions WHERE file_id = $1::uuid")
                .bind(&ack.file_id)
                .fetch_one(owner)
                .await
                .unwrap();
        let acked = acks.iter().filter(|a| a.file_id == ack.file_id).count();
        assert_eq!(versions as usize, acked, "versions of {}", ack.file_id);
        let completed: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM events
              WHERE aggregate_id = $1 AND event_type = 'VersionCompleted'
                AND (payload::jsonb #>> '{VersionCompleted,version_number}')::int = $2",
        )
        .bind(&ack.file_id)
        .bind(ack.version)
        .fetch_one(owner)
        .await
        .unwrap();
        assert_eq!(completed, 1, "VersionCompleted of {ack:?}");
    }
    eventually_explained("nothing orphaned in tmp/", left(), async || {
        let orphans: Vec<PathBuf> = deployment
            .temp_files()
            .into_iter()
            .filter(|p| !keep.contains(p))
            .collect();
        if orphans.is_empty() {
            return Ok(());
        }
        Err(format!("{orphans:?}\n{}", logs()))
    })
    .await;
}
