//! Two of each behind a load balancer: two `chronicle web` and two `chronicle worker`
//! processes behind nginx on loopback; under upload load with SSE clients connected, one
//! web and one worker are SIGKILLed. Nothing acknowledged is lost or doubled, and the
//! streams of the killed instance resume on the survivor with `Last-Event-ID`, each
//! client ending with exactly its user's rows.

mod checks;
mod clients;
mod cluster;
mod standing;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use checks::{check_resume, check_streams, check_uploads, expected_rows};
use clients::{SseLog, UploadLog, signup, sse_client, uploader};
use cluster::{Cluster, nginx_available};

const USERS: usize = 3;
const UPLOADERS_PER_USER: usize = 2;
const STREAMS_PER_USER: usize = 2;
/// Completed uploads before the kill, and acknowledgements after it.
const BEFORE_KILL: i64 = 10;
const AFTER_KILL: usize = 20;
/// And for at least this long (past the 3 s visibility timeout of the dead worker's jobs).
const LOAD_AFTER_KILL: Duration = Duration::from_secs(5);

/// Polls `check` until it passes; fails with its last complaint at the deadline.
pub use crate::common::eventually_explained as eventually;

pub struct Stream {
    pub user: usize,
    pub log: Arc<Mutex<SseLog>>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_webs_and_two_workers_behind_nginx_lose_nothing_when_one_of_each_is_killed() {
    if !nginx_available("multi_instance") {
        return;
    }
    // Everything (processes included, through Drop) ends within two minutes.
    tokio::time::timeout(Duration::from_secs(110), scenario())
        .await
        .expect("the multi-instance scenario finishes within 110 s");
}

async fn scenario() {
    let mut cluster = Cluster::start().await;
    let base = cluster.base();
    let mut users = Vec::new();
    for i in 0..USERS {
        users.push(signup(&base, &format!("lb{i}")).await);
    }

    // Streams first, so every row of every user is produced while they listen.
    let sse_stop = CancellationToken::new();
    let mut streams = Vec::new();
    let mut sse_tasks = Vec::new();
    for (u, user) in users.iter().enumerate() {
        for _ in 0..STREAMS_PER_USER {
            let log = Arc::new(Mutex::new(SseLog::default()));
            let token = user.token.clone();
            sse_tasks.push(sse_client(
                base.clone(),
                token,
                None,
                sse_stop.clone(),
                log.clone(),
            ));
            streams.push(Stream { user: u, log });
        }
    }
    let total = streams.len();
    eventually("every stream connected", Duration::from_secs(20), || {
        let n = streams
            .iter()
            .filter(|s| s.log.lock().unwrap().upstream().is_some())
            .count();
        async move {
            if n == total {
                Ok(())
            } else {
                Err(format!("{n} of {total} connected"))
            }
        }
    })
    .await;
    // The victim: the web instance serving the most streams (round robin spreads them).
    let serving = |addr: &str| {
        streams
            .iter()
            .filter(|s| s.log.lock().unwrap().upstream() == Some(addr))
            .count()
    };
    let (victim, survivor) = if serving(&cluster.webs[0].addr()) >= serving(&cluster.webs[1].addr())
    {
        (0, 1)
    } else {
        (1, 0)
    };
    let (victim_addr, survivor_addr) = (cluster.webs[victim].addr(), cluster.webs[survivor].addr());
    let on_victim: Vec<usize> = (0..streams.len())
        .filter(|&i| streams[i].log.lock().unwrap().upstream() == Some(victim_addr.as_str()))
        .collect();
    assert!(!on_victim.is_empty(), "no stream reached {victim_addr}");

    // Load: every user uploads continuously from two clients.
    let load_stop = CancellationToken::new();
    let uploads = Arc::new(Mutex::new(UploadLog::default()));
    let mut upload_tasks = Vec::new();
    for (u, user) in users.iter().enumerate() {
        for k in 0..UPLOADERS_PER_USER {
            upload_tasks.push(uploader(
                base.clone(),
                user.token.clone(),
                format!("lb{u}-{k}"),
                load_stop.clone(),
                uploads.clone(),
            ));
        }
    }
    let db = cluster.owner().clone();
    let completed = |db: sqlx::PgPool| async move {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM events WHERE event_type = 'VersionCompleted'",
        )
        .fetch_one(&db)
        .await
        .unwrap()
    };
    // Mid-load: jobs are completing, and the worker to be killed holds some.
    let cluster_ref = &cluster;
    eventually("load under way", Duration::from_secs(40), || {
        let db = db.clone();
        async move {
            let done = completed(db).await;
            let held = cluster_ref.first_worker_pending().await.unwrap_or(0);
            if done >= BEFORE_KILL && held > 0 {
                Ok(())
            } else {
                Err(format!("{done} completed; worker 0 holds {held} jobs"))
            }
        }
    })
    .await;
    // Freeze the worker, then read what it holds: frozen, it can neither finish nor
    // acknowledge, so what is read is what the kill orphans (read while it runs, the count
    // could drain to nothing before the kill lands). A moment with nothing held is skipped.
    let orphaned_jobs = loop {
        cluster.workers[0].freeze();
        // A command already on its way to Redis (an acknowledgement) lands first.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let held = cluster.first_worker_pending().await.unwrap_or(0);
        if held > 0 {
            break held;
        }
        cluster.workers[0].resume();
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let acked_before_kill = uploads.lock().unwrap().acks.len();
    cluster.webs[victim].process.kill9();
    cluster.workers[0].kill9();
    let killed_at = Instant::now();

    eventually(
        "uploads acknowledged after the kill",
        Duration::from_secs(40),
        || {
            let n = uploads.lock().unwrap().acks.len() - acked_before_kill;
            let long_enough = killed_at.elapsed() >= LOAD_AFTER_KILL;
            async move {
                if n >= AFTER_KILL && long_enough {
                    Ok(())
                } else {
                    Err(format!("{n} acknowledged"))
                }
            }
        },
    )
    .await;
    eventually(
        "the victim's streams resumed on the survivor",
        Duration::from_secs(20),
        || {
            let moved = on_victim.iter().all(|&i| {
                let log = streams[i].log.lock().unwrap();
                log.drops >= 1 && log.upstream() == Some(survivor_addr.as_str())
            });
            async move { if moved { Ok(()) } else { Err("not yet".into()) } }
        },
    )
    .await;
    load_stop.cancel();
    for task in upload_tasks {
        task.await.expect("an uploader panicked");
    }
    let load_secs = killed_at.elapsed().as_secs_f64();
    let uploads = std::mem::take(&mut *uploads.lock().unwrap());

    // Every committed upload settles, and the notifications projector has its rows.
    let cluster_ref = &cluster;
    eventually("every version completed and notified", Duration::from_secs(45), || {
        let db = db.clone();
        async move {
            // The dead worker's jobs were claimed by the survivor and acknowledged.
            let pending = cluster_ref.pending().await;
            if pending > 0 {
                return Err(format!("{pending} jobs delivered and not acknowledged"));
            }
            let (uploaded, completed, notified): (i64, i64, i64) = sqlx::query_as(
                "SELECT (SELECT count(*) FROM events WHERE event_type = 'Uploaded'),
                        (SELECT count(*) FROM file_versions WHERE status = 'completed'),
                        (SELECT count(*) FROM notifications WHERE kind = 'version_completed')",
            )
            .fetch_one(&db)
            .await
            .unwrap();
            if uploaded == completed && uploaded == notified {
                Ok(())
            } else {
                let statuses: Vec<(String, i64)> = sqlx::query_as(
                    "SELECT status::text, count(*) FROM file_versions GROUP BY 1 ORDER BY 1",
                )
                .fetch_all(&db)
                .await
                .unwrap();
                Err(format!("{uploaded} uploaded, {completed} completed, {notified} notified; {statuses:?}"))
            }
        }
    })
    .await;
    let expected = expected_rows(&db, &users).await;
    eventually(
        "every stream has its user's rows",
        Duration::from_secs(30),
        || {
            let behind: Vec<String> = streams
                .iter()
                .enumerate()
                .filter_map(|(i, s)| {
                    let have = s.log.lock().unwrap().ids.len();
                    let want = expected[s.user].len();
                    (have < want).then(|| format!("stream {i}: {have} of {want}"))
                })
                .collect();
            async move {
                if behind.is_empty() {
                    Ok(())
                } else {
                    Err(behind.join(", "))
                }
            }
        },
    )
    .await;
    // A little more time for anything extra (a duplicate) to show up before the check.
    tokio::time::sleep(Duration::from_millis(500)).await;
    sse_stop.cancel();
    for task in sse_tasks {
        task.await.expect("an SSE client panicked");
    }

    let report = check_uploads(&cluster, &base, &users, &uploads).await;
    check_streams(&streams, &expected, &on_victim, &survivor_addr);
    check_resume(&base, &users[0], &expected[0]).await;
    let access = cluster.nginx.access_log();
    assert!(
        access.lines().any(|l| l.contains("/v1/events 200")
            && l.contains(&format!("upstream={survivor_addr}"))
            && !l.contains("last_event_id=\"\"")),
        "no resumed stream in nginx's access log:\n{access}"
    );
    let reconnects: u32 = streams.iter().map(|s| s.log.lock().unwrap().drops).sum();
    let delivered: usize = streams
        .iter()
        .map(|s| s.log.lock().unwrap().ids.len())
        .sum();
    let notifications: usize = expected.iter().map(Vec::len).sum();
    eprintln!(
        "multi-instance: {} uploads acknowledged ({} before the kill), lost 0, duplicated 0; \
         {} failed attempts during the kill ({}), {} uploads retried until acknowledged; {} committed \
         without acknowledgement (retried with the same bytes, completed too); load ran \
         {load_secs:.1} s after the kill; {orphaned_jobs} jobs of the killed worker redelivered \
         and completed; {} streams ({} on the killed web) reconnected {reconnects} \
         times; {notifications} rows for {USERS} users ({} version_completed), {delivered} \
         events delivered, each exactly once",
        uploads.acks.len(),
        acked_before_kill,
        uploads.failures.len(),
        report.failure_kinds,
        uploads.acks.iter().filter(|a| a.attempts > 1).count(),
        report.unacknowledged,
        streams.len(),
        on_victim.len(),
        report.completed_notifications,
    );
}
