//! Scaling workers on `chronicle_queue_depth` (docs/deployment.md, "Scaling workers"):
//! 1,000 jobs wait in the queue, the metric shows them, three `chronicle worker`
//! processes share the one consumer group, and the depth falls to zero with every job
//! run to completion exactly once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chronicle::app::Mode;
use futures::StreamExt;

use crate::common::{TestApp, redis_url};
use crate::pipeline::{Client, bytes_of, signup, upload_ok};
use crate::process::Process;

const JOBS: usize = 1000;

/// `chronicle_queue_depth{state="ready"}` as the web instance's /metrics reports it.
async fn ready_depth(t: &TestApp) -> i64 {
    let text = t
        .http
        .get(t.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
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

    let c: Client = signup(&t, "fleet").await;
    futures::stream::iter(0..JOBS)
        .for_each_concurrent(8, |i| {
            let (t, c) = (&t, &c);
            async move {
                let bytes = bytes_of((i % 251) as u8, 64 + i);
                upload_ok(t, c, &format!("f{i}.bin"), bytes).await;
            }
        })
        .await;
    let deadline = Instant::now() + Duration::from_secs(120);
    while ready_depth(&t).await < JOBS as i64 {
        assert!(Instant::now() < deadline, "the queue never held every job");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Scale out: three worker processes, as an autoscaler would start on that depth.
    let started = Instant::now();
    let workers: Vec<Process> = (0..3)
        .map(|_| Process::spawn(&["worker"], &env("2"), &config.data_dir))
        .collect();
    let mut depths = vec![JOBS as i64];
    let deadline = Instant::now() + Duration::from_secs(400);
    loop {
        let (completed, _) = count(&t.db.owner, "VersionCompleted").await;
        let depth = ready_depth(&t).await;
        depths.push(depth);
        if completed >= JOBS as i64 && depth == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{completed} of {JOBS} completed, depth {depth}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let took = started.elapsed();

    // Exactly once: one start and one completion per version, no failure.
    assert_eq!(
        count(&t.db.owner, "Uploaded").await,
        (JOBS as i64, JOBS as i64)
    );
    assert_eq!(
        count(&t.db.owner, "ProcessingStarted").await,
        (JOBS as i64, JOBS as i64)
    );
    assert_eq!(
        count(&t.db.owner, "VersionCompleted").await,
        (JOBS as i64, JOBS as i64)
    );
    assert_eq!(count(&t.db.owner, "ProcessingFailed").await.0, 0);
    // Every worker took part, and their finished jobs add up to the total.
    let finished: Vec<usize> = workers
        .iter()
        .map(|w| w.output().matches("\"job finished\"").count())
        .collect();
    assert!(finished.iter().all(|&n| n > 0), "{finished:?}");
    assert_eq!(finished.iter().sum::<usize>(), JOBS, "{finished:?}");
    // The depth only went down while they drained it (no job came back).
    let mut by_step: HashMap<bool, usize> = HashMap::new();
    for w in depths.windows(2) {
        *by_step.entry(w[1] <= w[0]).or_default() += 1;
    }
    assert_eq!(by_step.get(&false), None, "depth rose: {depths:?}");
    eprintln!(
        "3 workers drained {JOBS} jobs in {:.1} s; per worker {finished:?}; depth samples {depths:?}",
        took.as_secs_f64()
    );
}
