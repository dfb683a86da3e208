//! The deployment under test, all real processes on loopback: two `chronicle web`, two
//! `chronicle worker` (one database, one storage directory, one Redis prefix) and a
//! Debian nginx load-balancing the two web instances. Every process is killed when the
//! cluster is dropped, also when the test panics.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis::AsyncCommands;

use crate::common::{
    PATIENCE, TempDir, TestDb, eventually_explained, redis_url, unique_redis_prefix,
};
use crate::process::{Process, free_port, wait_ready};

pub const NGINX: &str = "/usr/sbin/nginx";
/// Shared by both web instances: a token issued by one must be accepted by the other.
const JWT_SECRET: &str = "5f4dcc3b5aa765d61d8327deb882cf995f4dcc3b5aa765d61d8327deb882cf99";

/// Whether nginx is installed; `false` after a loud skip line, a panic in CI.
pub fn nginx_available(test: &str) -> bool {
    if Path::new(NGINX).exists() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test}: {NGINX} is required in CI (.ci/run installs nginx)");
    }
    eprintln!(
        "!!! SKIPPED {test}: {NGINX} is missing; `apt-get install nginx-light` (or `nginx`) \
         to run the load-balancer test !!!"
    );
    false
}

/// A `chronicle web` instance and the port it listens on.
pub struct Web {
    pub process: Process,
    pub port: u16,
}

impl Web {
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// Field order is drop order: the proxy first, then the instances, then their database
/// and storage.
pub struct Cluster {
    pub nginx: Nginx,
    pub webs: Vec<Web>,
    pub workers: Vec<Process>,
    redis: redis::aio::MultiplexedConnection,
    prefix: String,
    pub db: TestDb,
    _data: TempDir,
}

impl Cluster {
    pub async fn start() -> Cluster {
        let db = TestDb::new().await;
        let data = TempDir::new();
        let prefix = unique_redis_prefix();
        let common = vec![
            ("DATABASE_URL", db.url.clone()),
            ("DB_MAX_CONNECTIONS", "4".to_string()),
            ("REDIS_URL", redis_url()),
            ("REDIS_KEY_PREFIX", prefix.clone()),
            ("DATA_DIR", data.0.join("storage").display().to_string()),
            ("JWT_SECRET", JWT_SECRET.to_string()),
            ("RATE_LIMIT_PER_MINUTE", "1000000".to_string()),
            ("AUTH_RATE_LIMIT_PER_MINUTE", "10000".to_string()),
            ("LOG_FORMAT", "json".to_string()),
            // A killed worker's jobs are redelivered after 3 s (not 5 min) and lost
            // enqueues repaired within 2 s, so the test settles in seconds.
            ("JOB_VISIBILITY_TIMEOUT_SECS", "3".to_string()),
            ("JOB_RECONCILE_SECS", "2".to_string()),
            ("JOB_BACKOFF_BASE_MS", "200".to_string()),
            ("WORKER_CONCURRENCY", "2".to_string()),
        ];
        let mut webs = Vec::new();
        for _ in 0..2 {
            let port = free_port();
            let mut env = common.clone();
            env.push(("BIND_ADDR", format!("127.0.0.1:{port}")));
            let process = Process::spawn(&["web"], &env, &data.0);
            webs.push(Web { process, port });
        }
        let http = reqwest::Client::new();
        for web in &webs {
            wait_ready(&http, &format!("http://{}", web.addr()), &web.process).await;
        }
        let workers: Vec<Process> = (0..2)
            .map(|_| Process::spawn(&["worker"], &common, &data.0))
            .collect();
        for worker in &workers {
            wait_for_log(worker, "chronicle started").await;
        }
        let redis = redis::Client::open(redis_url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let upstreams: Vec<String> = webs.iter().map(Web::addr).collect();
        let nginx = Nginx::start(&data.0.join("nginx"), &upstreams).await;
        Cluster {
            nginx,
            webs,
            workers,
            redis,
            prefix,
            db,
            _data: data,
        }
    }

    /// Where clients go: nginx.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.nginx.port)
    }

    /// Jobs delivered to the first worker and not acknowledged (in flight, or orphaned
    /// once it is dead and until another worker claims them); `None` until the first
    /// worker has finished a job (its log then names its consumers).
    pub async fn first_worker_pending(&self) -> Option<usize> {
        let output = self.workers[0].output();
        let finished = output.lines().find(|l| l.contains("job finished"))?;
        let (_, rest) = finished.split_once("\"consumer\":\"worker-")?;
        // `worker-{instance}-{n}`: the instance is the process.
        let instance = format!("worker-{}", &rest[..36]);
        let held = consumers(&self.redis, &self.prefix)
            .await
            .iter()
            .filter(|c| c.name.starts_with(&instance))
            .map(|c| c.pending)
            .sum();
        Some(held)
    }

    /// Jobs delivered to any worker and not acknowledged.
    pub async fn pending(&self) -> usize {
        consumers(&self.redis, &self.prefix)
            .await
            .iter()
            .map(|c| c.pending)
            .sum()
    }

    /// The database owner (bypasses row-level security): for checking outcomes.
    pub fn owner(&self) -> &sqlx::PgPool {
        &self.db.owner
    }
}

/// Polls a process's log for `line` (a worker has no HTTP port to probe).
pub async fn wait_for_log(process: &Process, line: &str) {
    eventually_explained(&format!("{line:?} in the log"), PATIENCE, async || {
        let output = process.output();
        if output.contains(line) {
            return Ok(());
        }
        Err(output)
    })
    .await;
}

/// The job queue's consumers (a consumer appears with its first delivery).
async fn consumers(
    redis: &redis::aio::MultiplexedConnection,
    prefix: &str,
) -> Vec<redis::streams::StreamInfoConsumer> {
    let reply: redis::RedisResult<redis::streams::StreamInfoConsumersReply> = redis
        .clone()
        .xinfo_consumers(format!("{prefix}jobs:ready"), "workers")
        .await;
    reply.map(|r| r.consumers).unwrap_or_default()
}

/// nginx in the foreground (`daemon off`), everything it writes under its own directory.
pub struct Nginx {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
}

impl Nginx {
    async fn start(dir: &Path, upstreams: &[String]) -> Nginx {
        std::fs::create_dir_all(dir).unwrap();
        let port = free_port();
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, config(dir, port, upstreams)).unwrap();
        let out = std::fs::File::create(dir.join("stderr.log")).unwrap();
        let child = Command::new(NGINX)
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&conf)
            // The error log before the configuration is read (else /var/log/nginx).
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-g")
            .arg(format!(
                "daemon off; pid {};",
                dir.join("nginx.pid").display()
            ))
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .expect("nginx starts");
        let mut nginx = Nginx {
            child,
            port,
            dir: dir.to_path_buf(),
        };
        let http = reqwest::Client::new();
        let url = format!("http://127.0.0.1:{port}/health/ready");
        eventually_explained("nginx ready", Duration::from_secs(30), async || {
            if let Ok(r) = http.get(&url).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            if let Ok(Some(status)) = nginx.child.try_wait() {
                panic!("nginx exited ({status}): {}", nginx.logs());
            }
            Err(nginx.logs())
        })
        .await;
        nginx
    }

    /// Its stderr and error log (shown when a test fails).
    pub fn logs(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        format!("{}{}", read("stderr.log"), read("error.log"))
    }

    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers (a SIGKILLed master would orphan them,
        // still listening). SIGKILL if it does not exit in time.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The proxy configuration: round robin over the web instances; a connection refused or
/// reset before a response moves an idempotent request (and any request not yet sent)
/// to the other instance; the event stream unbuffered with long timeouts.
fn config(dir: &Path, port: u16, upstreams: &[String]) -> String {
    let dir = dir.display();
    let servers: String = upstreams
        .iter()
        .map(|a| format!("        server {a} max_fails=1 fail_timeout=10s;\n"))
        .collect();
    // Workers run as the invoking user: as root they would switch to `nobody`, which may
    // not write the temp directories in a test's directory.
    // Repeated per location: a location with any `proxy_set_header` inherits none.
    let headers = "            proxy_set_header Connection \"\";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n";
    let user = if is_root() { "user root root;\n" } else { "" };
    format!(
        r#"{user}worker_processes 1;
events {{ worker_connections 1024; }}
http {{
    log_format upstream '$request_method $uri $status upstream=$upstream_addr last_event_id="$http_last_event_id"';
    access_log {dir}/access.log upstream;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    client_max_body_size 64m;

    upstream chronicle {{
{servers}    }}

    server {{
        listen 127.0.0.1:{port};
        proxy_http_version 1.1;
        proxy_connect_timeout 2s;
        # Never `non_idempotent`: a POST that reached an instance is not sent again.
        proxy_next_upstream error timeout http_502 http_503 http_504;
        proxy_next_upstream_tries 2;
        add_header X-Upstream $upstream_addr always;

        location / {{
            proxy_pass http://chronicle;
{headers}        }}

        location = /v1/events {{
            proxy_pass http://chronicle;
            proxy_buffering off;
            proxy_cache off;
            proxy_read_timeout 1h;
            proxy_send_timeout 1h;
{headers}            # Sent on by default; named here because resuming depends on it.
            proxy_set_header Last-Event-ID $http_last_event_id;
        }}
    }}
}}
"#
    )
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}
