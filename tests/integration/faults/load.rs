//! Postgres stopped in the middle of a stream of uploads, and Redis flushed with jobs
//! queued: every acknowledged upload still ends `completed` exactly once, nothing is left
//! in `tmp/`, and every refusal during the outage is a `503`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;

use super::{Ack, Chronicle, Deployment, assert_completed_exactly_once, unique_bytes};
use crate::common::{
    PATIENCE, TempDir, TestDb, eventually_explained, eventually_within, redis_url,
    unique_redis_prefix,
};
use crate::services::{OwnPostgres, OwnRedis};

/// What the clients saw.
#[derive(Default)]
struct Outcomes {
    acks: Vec<Ack>,
    /// Statuses other than 202, and transport errors (as 0).
    refused: Vec<u16>,
}

/// `clients` uploaders sending files until `stop` is set.
fn load(
    c: &Arc<Chronicle>,
    token: &str,
    clients: u64,
    outcomes: &Arc<Mutex<Outcomes>>,
    stop: &Arc<std::sync::atomic::AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..clients)
        .map(|client| {
            let (c, token, outcomes, stop) =
                (c.clone(), token.to_string(), outcomes.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    let bytes = unique_bytes(client * 1_000_000 + n, 50_000);
                    match c.upload(&token, "load.bin", bytes).await {
                        Ok(r) if r.status() == StatusCode::ACCEPTED => {
                            let ack = Ack::from_response(r).await;
                            outcomes.lock().unwrap().acks.push(ack);
                        }
                        Ok(r) => outcomes.lock().unwrap().refused.push(r.status().as_u16()),
                        Err(_) => outcomes.lock().unwrap().refused.push(0),
                    }
                }
            })
        })
        .collect()
}

fn acks_so_far(outcomes: &Arc<Mutex<Outcomes>>) -> usize {
    outcomes.lock().unwrap().acks.len()
}

/// Waits until the clients had `more` further uploads acknowledged.
async fn until_more_acks(outcomes: &Arc<Mutex<Outcomes>>, more: usize, c: &Chronicle) {
    let target = acks_so_far(outcomes) + more;
    eventually_explained("uploads acknowledged again", PATIENCE, async || {
        if acks_so_far(outcomes) < target {
            return Err(c.process.output());
        }
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_mid_load_loses_and_duplicates_no_acknowledged_upload() {
    let pg = OwnPostgres::start();
    let data = TempDir::new();
    let deployment = Deployment {
        database_url: pg.url("chronicle"),
        redis_url: redis_url(),
        redis_prefix: unique_redis_prefix(),
        data_dir: data.0.clone(),
    };
    let c = Arc::new(
        deployment
            .start_http("serve", &[("TEMP_SWEEP_AFTER_SECS", "2".into())])
            .await,
    );
    let token = c.account("ada").await;
    let outcomes = Arc::new(Mutex::new(Outcomes::default()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients = load(&c, &token, 3, &outcomes, &stop);

    until_more_acks(&outcomes, 5, &c).await;
    tokio::task::block_in_place(|| pg.stop());
    // The clients keep sending while it is down: refusals pile up.
    eventually_within(
        "refusals while Postgres is down",
        Duration::from_secs(30),
        async || (outcomes.lock().unwrap().refused.len() >= 6).then_some(()),
    )
    .await;
    tokio::task::block_in_place(|| pg.resume());
    until_more_acks(&outcomes, 5, &c).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }

    let (acks, refused) = {
        let o = outcomes.lock().unwrap();
        (o.acks.clone(), o.refused.clone())
    };
    assert!(
        refused.iter().all(|&s| s == 503),
        "refusals other than 503: {refused:?}"
    );
    let url = pg.url("chronicle");
    let owner = chronicle::db::pool(&url, chronicle::db::DbRole::Owner, 2)
        .await
        .unwrap();
    eprintln!(
        "postgres stopped mid-load: {} acknowledged, {} refused",
        acks.len(),
        refused.len()
    );
    assert_completed_exactly_once(
        &owner,
        &deployment,
        &acks,
        &[],
        Duration::from_secs(100),
        &|| c.process.output(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_flushed_with_jobs_queued_loses_and_duplicates_no_acknowledged_upload() {
    let db = TestDb::new().await;
    let redis = OwnRedis::start();
    let data = TempDir::new();
    let deployment = Deployment {
        database_url: db.url.clone(),
        redis_url: redis.url(),
        redis_prefix: "flushed:".into(),
        data_dir: data.0.clone(),
    };
    // The API alone: the jobs wait in the Redis queue.
    let api = deployment.start_http("web", &[]).await;
    let token = api.account("ada").await;
    let mut acks = Vec::new();
    for seed in 0..6 {
        let r = api
            .upload(&token, "queued.bin", unique_bytes(seed, 50_000))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        acks.push(Ack::from_response(r).await);
    }
    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("flushed:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!keys.is_empty(), "no queued jobs in Redis");
    // Our own server: FLUSHALL touches no other test.
    redis::cmd("FLUSHALL")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();

    let worker = deployment.start_worker(&[("TEMP_SWEEP_AFTER_SECS", "2".into())]);
    assert_completed_exactly_once(
        &db.owner,
        &deployment,
        &acks,
        &[],
        Duration::from_secs(90),
        &|| worker.output(),
    )
    .await;
}
