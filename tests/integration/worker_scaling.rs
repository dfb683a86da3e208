//! Scaling workers on `chronicle_queue_depth` (docs/deployment.md, "Scaling workers"):
//! 1,000 jobs wait in the queue, the metric shows them, three `chronicle worker`
//! processes share the one consumer group, and the depth falls to zero with every job
//! run to completion exactly once.

use std::time::{Duration, Instant};

use chronicle::app::Mode;
use futures::StreamExt;

use crate::common::{Client, TestApp, bytes_of, redis_url};
use crate::process::Process;

const JOBS: usize = 1000;

/// `chronicle_queue_depth{state="ready"}` as the web instance's /metrics reports it.
async fn ready_depth(t: &TestApp) -> i64 {
    let text = t.metrics().await;
    text.lines()
        .find_map(|l| l.strip_prefix("chronicle_queue_depth{state=\"ready\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(-1)
}

async fn count(db: &sqlx::PgPool, event_type: &str) -> (i64, i64) {
    sqlx::query_as(
        "SELECT count(*), count(DISTINCT (aggregate_id, payload::jsonb -> event_type -> 'version_number'))
           FROM events WHERE event_type = $1",
    )
    .bind(event_type)
    .fetch_one(db)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_drain_1000_jobs_following_the_queue_depth_and_run_each_once() {
    let t = TestApp::spawn(Mode::Web, &[("RATE_LIMIT_PER_MINUTE", "1000000")]).await;
    let config = &t.app.state.config;
    let env = |concurrency: &str| {
        vec![
            ("DATABASE_URL", t.db.url.clone()),
            ("REDIS_URL", redis_url()),
            ("REDIS_KEY_PREFIX", config.redis_key_prefix.clone()),
            ("DATA_DIR", config.data_dir.display().to_string()),
            ("WORKER_CONCURRENCY", concurrency.to_string()),
            ("LOG_FORMAT", "json".into()),
        ]
    };
    // Projectors only (no jobs): the jobs projector queues each upload's job, and the
    // queue fills up as it would while workers are scaled to zero.
    let _projectors = Process::spawn(&["worker"], &env("0"), &config.data_dir);

    let c: Client = t.signup("fleet").await;
    futures::stream::iter(0..JOBS)
        .for_each_concurrent(8, |i| {
            let (t, c) = (&t, &c);
            async move {
                let bytes = bytes_of((i % 251) as u8, 64 + i);
                t.upload_ok(c, &format!("f{i}.bin"), bytes).await;
            }
        })
        .await;
    crate::common::eventually_within(
        "the queue holds every job",
        Duration::from_secs(120),
        async || (ready_depth(&t).await >= JOBS as i64).then_some(()),
    )
    .await;

    // Scale out: three worker processes, as an autoscaler would start on that depth.
    let started = Instant::now();
    let workers: Vec<Process> = (0..3)
        .map(|_| Process::spawn(&["worker"], &env("2"), &config.data_dir))
        .collect();
    let mut depths = vec![JOBS as i64];
    crate::common::eventually_explained(
        "the workers complete every job and drain the queue",
        Duration::from_secs(400),
        async || {
            let (completed, _) = count(&t.db.owner, "VersionCompleted").await;
            let depth = ready_depth(&t).await;
            depths.push(depth);
            if completed >= JOBS as i64 && depth == 0 {
                Ok(())
            } else {
                Err(format!("{completed} of {JOBS} completed, depth {depth}"))
            }
        },
    )
    .await;
    let took = started.elapsed();

    // Exactly once to completion: one verdict per version, no failure. Delivery is at
    // least once (a projector batch replayed after a lease handover queues a job
    // again), so a second worker may start a version another is running; its steps are
    // idempotent and no second verdict is recorded. Counted and reported, not hidden.
    let jobs = JOBS as i64;
    assert_eq!(count(&t.db.owner, "Uploaded").await, (jobs, jobs));
    assert_eq!(count(&t.db.owner, "VersionCompleted").await, (jobs, jobs));
    assert_eq!(count(&t.db.owner, "ProcessingFailed").await.0, 0);
    let (starts, started_versions) = count(&t.db.owner, "ProcessingStarted").await;
    assert_eq!(started_versions, jobs);
    let concurrent_duplicates = (starts - jobs) as usize;
    // Every worker took part; what they ran to the end adds up to the total, plus at
    // most the concurrent duplicates (which finish their idempotent steps too).
    let finished: Vec<usize> = workers
        .iter()
        .map(|w| w.output().matches("\"job finished\"").count())
        .collect();
    assert!(finished.iter().all(|&n| n > 0), "{finished:?}");
    let total: usize = finished.iter().sum();
    assert!(
        (JOBS..=JOBS + concurrent_duplicates).contains(&total),
        "{finished:?}, {concurrent_duplicates} duplicate starts"
    );
    // The depth went from the full queue to zero.
    assert_eq!(depths.last(), Some(&0));
    let settled_again: usize = workers
        .iter()
        .map(|w| {
            w.output()
                .matches("\"job already settled; acknowledged\"")
                .count()
        })
        .sum();
    eprintln!(
        "3 workers drained {JOBS} jobs in {:.1} s; per worker {finished:?}; {settled_again} deliveries of settled jobs acknowledged without work, {concurrent_duplicates} concurrent duplicate starts; depth samples {depths:?}",
        took.as_secs_f64()
    );
}
