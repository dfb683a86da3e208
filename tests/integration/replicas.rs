//! Read replicas against real streaming replicas of the local primary, started by
//! scripts/start-replica.sh (`pg_basebackup -R` into a second cluster on a 75xx port).
//! Runs when `REPLICA_TEST=1` (CI sets it after running the script once).

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chronicle::app::Mode;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Client, TestApp, TestDb, WORKER, bytes_of, eventually};

/// Starts (or reuses) the replica on `port` with `delay`; false (skip) unless enabled.
pub fn replica(port: u16, delay: &str) -> bool {
    if std::env::var("REPLICA_TEST").is_err() {
        assert!(std::env::var("CI").is_err(), "CI must set REPLICA_TEST");
        eprintln!("!!! SKIPPED: REPLICA_TEST is not set (scripts/start-replica.sh)");
        return false;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/start-replica.sh");
    let out = Command::new("bash")
        .args([script, &port.to_string(), delay])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "start-replica.sh failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    true
}

/// Stops the replica on `port` at once (SIGQUIT: no shutdown checkpoint, connections cut).
///
/// A checkpoint on the primary and then a restartpoint on the replica come first: the
/// restarted replica replays the WAL from its last restartpoint before it takes
/// connections, and in a full CI run (hundreds of databases created since the last one)
/// that backlog alone outlasted the start timeout. The kill itself is unchanged.
fn kill_replica(port: u16) {
    let dir = format!("/var/tmp/chronicle-replica-{port}");
    for target in ["5432".to_string(), port.to_string()] {
        let out = Command::new("psql")
            .args(["-h", "127.0.0.1", "-p", &target, "-U", "postgres"])
            .args(["-Atqc", "CHECKPOINT"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "CHECKPOINT on {target}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = Command::new("runuser")
        .args([
            "-u",
            "postgres",
            "--",
            "/usr/lib/postgresql/15/bin/pg_ctl",
            "-D",
            &dir,
            "stop",
            "-m",
            "immediate",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn read_url(db: &TestDb, port: u16) -> String {
    format!("postgres://root@127.0.0.1:{port}/{}", db.name)
}

pub async fn metric(t: &TestApp, line_prefix: &str) -> f64 {
    let text = t.metrics().await;
    text.lines()
        .find_map(|l| l.strip_prefix(line_prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

pub async fn replica_reads(t: &TestApp, port: u16) -> f64 {
    metric(
        t,
        &format!("chronicle_db_reads_total{{replica=\"127.0.0.1:{port}\"}} "),
    )
    .await
}

pub async fn wait_replica_up(t: &TestApp, port: u16) {
    let up = format!("chronicle_replica_up{{replica=\"127.0.0.1:{port}\"}} ");
    crate::common::eventually_within(
        &format!("the replica on {port} comes up"),
        Duration::from_secs(60),
        async || (metric(t, &up).await >= 1.0).then_some(()),
    )
    .await;
}

/// `GET /v1/tags`: a read that goes to a replica when the caller may read one. (The
/// listing is answered from the listing cache, whose misses read the primary:
/// docs/listing-cache.md.)
async fn tags(t: &TestApp, c: &Client) -> reqwest::Response {
    t.http
        .get(t.url("/v1/tags"))
        .bearer_auth(&c.token)
        .send()
        .await
        .unwrap()
}

async fn list(t: &TestApp, c: &Client) -> reqwest::Response {
    t.http
        .get(t.url("/v1/files"))
        .bearer_auth(&c.token)
        .send()
        .await
        .unwrap()
}

/// Transactions committed on the replica in this test's database.
async fn replica_commits(port: u16, db: &str) -> i64 {
    let url = format!("postgres://root@127.0.0.1:{port}/postgres");
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT xact_commit FROM pg_stat_database WHERE datname = $1")
        .bind(db)
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_to_a_replica_yet_a_writer_never_reads_its_own_change_stale() {
    // A replica always 2 s behind: any read it served after a write would be stale.
    const PORT: u16 = 7501;
    if !replica(PORT, "2s") {
        return;
    }
    let db = TestDb::new().await;
    let read_url = read_url(&db, PORT);
    let t = TestApp::spawn_on(
        db,
        Mode::Serve,
        &[
            WORKER[0],
            ("DATABASE_READ_URL", read_url.as_str()),
            ("REPLICA_CHECK_EVERY_MS", "200"),
        ],
    )
    .await;
    wait_replica_up(&t, PORT).await;
    let writer = t.signup("writer").await;
    let reader = t.signup("reader").await;
    let accepted = t.upload_ok(&writer, "old-name.txt", bytes_of(1, 100)).await;
    let file_id = accepted["file_id"].as_str().unwrap().to_string();
    assert_eq!(t.settled_status(&file_id, 1).await, "completed");

    // The writer renames, then lists again and again: whenever the primary already
    // showed the new name before a listing was asked for, that listing shows it. The
    // clock starts when the primary first shows it, not at the rename: how soon the
    // projector gets there depends on every transaction in the cluster (an event is
    // projected once all older transactions ended), which under a full test run can
    // take seconds; the replica's delay starts at the same commit.
    let r = t
        .http
        .patch(t.url(&format!("/v1/files/{file_id}")))
        .bearer_auth(&writer.token)
        .json(&json!({"display_name": "new-name.txt"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let started = Instant::now();
    let mut primary_since: Option<Instant> = None;
    let mut checked_after = 0;
    while checked_after < 10 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the rename never reached the primary's read table"
        );
        let primary_has_it: bool = sqlx::query_scalar(
            "SELECT display_name = 'new-name.txt' FROM files WHERE id = $1::uuid",
        )
        .bind(&file_id)
        .fetch_one(&t.db.owner)
        .await
        .unwrap();
        if primary_has_it {
            primary_since.get_or_insert_with(Instant::now);
        }
        let r = list(&t, &writer).await;
        assert_eq!(r.status(), StatusCode::OK);
        let page: Value = r.json().await.unwrap();
        let name = page["items"][0]["display_name"].as_str().unwrap();
        if let Some(since) = primary_since {
            assert_eq!(
                name, "new-name.txt",
                "a stale read after the caller's own write"
            );
            // Answered well within the replica's 2 s behind that commit: had the read
            // gone to the replica, it would have shown the old name.
            if checked_after == 0 {
                let answered = since.elapsed();
                assert!(answered < Duration::from_millis(1500), "{answered:?}");
            }
            checked_after += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A reader who wrote nothing is served by the replica, visibly in its statistics.
    let before_metric = replica_reads(&t, PORT).await;
    let before_commits = replica_commits(PORT, &t.db.name).await;
    for _ in 0..50 {
        assert_eq!(tags(&t, &reader).await.status(), StatusCode::OK);
    }
    let served = replica_reads(&t, PORT).await - before_metric;
    assert!(served >= 50.0, "the replica served {served} of 50 reads");
    // pg_stat_database on a standby counts its own read-only transactions.
    crate::common::eventually_explained(
        "the replica counts the 50 reads it served",
        Duration::from_secs(5),
        async || {
            let commits = replica_commits(PORT, &t.db.name).await - before_commits;
            if commits >= 50 {
                Ok(())
            } else {
                Err(format!("replica committed {commits} transactions"))
            }
        },
    )
    .await;
    // Its lag is exported.
    let lag = metric(
        &t,
        &format!("chronicle_replica_lag_bytes{{replica=\"127.0.0.1:{PORT}\"}} "),
    )
    .await;
    assert!(lag >= 0.0);
    let text = t.metrics().await;
    assert!(text.contains("chronicle_replica_lag_seconds{replica=\"127.0.0.1:7501\"}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_under_read_load_is_skipped_without_errors_and_used_again_once_back() {
    // Its own replica: this test kills it.
    const PORT: u16 = 7502;
    if !replica(PORT, "0") {
        return;
    }
    let db = TestDb::new().await;
    let read_url = read_url(&db, PORT);
    let t = Arc::new(
        TestApp::spawn_on(
            db,
            Mode::Serve,
            &[
                ("DATABASE_READ_URL", read_url.as_str()),
                ("REPLICA_CHECK_EVERY_MS", "200"),
                ("RATE_LIMIT_PER_MINUTE", "1000000"),
            ],
        )
        .await,
    );
    wait_replica_up(&t, PORT).await;
    let c = Arc::new(t.signup("loader").await);

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (t, c, stop, ok) = (t.clone(), c.clone(), stop.clone(), ok.clone());
        load.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let r = tags(&t, &c).await;
                if r.status() == StatusCode::OK {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failures.push(format!(
                        "{} {}",
                        r.status(),
                        r.text().await.unwrap_or_default()
                    ));
                }
            }
            failures
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let on_replica = replica_reads(&t, PORT).await;
    assert!(
        on_replica > 0.0,
        "no read reached the replica before the kill"
    );
    kill_replica(PORT);
    let killed_at = ok.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after_kill = ok.load(Ordering::Relaxed) - killed_at;
    let primary_reads = metric(&t, "chronicle_db_reads_total{replica=\"primary\"} ").await;
    assert!(primary_reads > 0.0);
    assert_eq!(
        metric(
            &t,
            &format!("chronicle_replica_up{{replica=\"127.0.0.1:{PORT}\"}} ")
        )
        .await,
        0.0
    );

    // Back again: reads return to it.
    assert!(replica(PORT, "0"));
    wait_replica_up(&t, PORT).await;
    let back = replica_reads(&t, PORT).await;
    // On a loaded machine the first reads after the restart may take a while to land.
    eventually("reads return to the replica", async || {
        replica_reads(&t, PORT).await > back
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        let failures = task.await.unwrap();
        assert!(failures.is_empty(), "reads failed: {failures:?}");
    }
    assert!(
        after_kill > 0,
        "no read was served while the replica was down"
    );
    eprintln!(
        "{} reads, none failed; {after_kill} while the replica was down",
        ok.load(Ordering::Relaxed)
    );
}

/// The report's benchmark (`--ignored`): `/v1/tags` requests/s from one instance with 0, 1
/// and 2 replicas (ports 7503, 7504), 16 concurrent clients for 5 s each. (It measured the
/// listing before listings were answered from memory, docs/listing-cache.md.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --ignored --nocapture (REPLICA_TEST=1)"]
async fn bench_listing_throughput_with_0_1_2_replicas() {
    if !(replica(7503, "0") && replica(7504, "0")) {
        return;
    }
    for replicas in [0usize, 1, 2] {
        let db = TestDb::new().await;
        let urls: Vec<String> = [7503u16, 7504][..replicas]
            .iter()
            .map(|p| read_url(&db, *p))
            .collect();
        let joined = urls.join(",");
        let mut env = vec![
            ("RATE_LIMIT_PER_MINUTE", "1000000"),
            ("FILE_CACHE_TTL_SECS", "0"),
        ];
        if replicas > 0 {
            env.push(("DATABASE_READ_URL", joined.as_str()));
        }
        let t = Arc::new(TestApp::spawn_on(db, Mode::Serve, &env).await);
        for port in &[7503u16, 7504][..replicas] {
            wait_replica_up(&t, *port).await;
        }
        let c = Arc::new(t.signup("bench").await);
        for i in 0..20 {
            t.upload_ok(&c, &format!("f{i}.txt"), bytes_of(i, 100))
                .await;
        }
        // Past the uploads' read-your-writes window: plain reads from here on.
        tokio::time::sleep(chronicle::replicas::RYW_WINDOW + Duration::from_secs(1)).await;
        let done = Arc::new(AtomicUsize::new(0));
        let deadline = Instant::now() + Duration::from_secs(5);
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let (t, c, done) = (t.clone(), c.clone(), done.clone());
                tokio::spawn(async move {
                    while Instant::now() < deadline {
                        let r = tags(&t, &c).await;
                        assert_eq!(r.status(), StatusCode::OK);
                        r.bytes().await.unwrap();
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let on_replicas: f64 = {
            let mut sum = 0.0;
            for port in &[7503u16, 7504][..replicas] {
                sum += replica_reads(&t, *port).await;
            }
            sum
        };
        eprintln!(
            "{replicas} replica(s): {:.0} listings/s ({} served by replicas)",
            done.load(Ordering::Relaxed) as f64 / 5.0,
            on_replicas
        );
    }
}
