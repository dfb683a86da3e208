//! The outcome checks of the multi-instance scenario, against the event store, the read
//! tables, what the clients saw, and a fresh resumed stream.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::clients::{Ack, SseLog, UploadLog, User, sse_client};
use super::cluster::Cluster;
use super::{Stream, eventually};

/// Event ids in the stream's order: transaction first, then global position.
fn order(id: &str) -> (u64, i64) {
    let (txid, pos) = id.split_once('-').unwrap();
    (txid.parse().unwrap(), pos.parse().unwrap())
}

/// Each user's rows, in the stream's order, as SSE ids.
pub async fn expected_rows(db: &sqlx::PgPool, users: &[User]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for user in users {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT transaction_id::text || '-' || global_position FROM notifications
              WHERE recipient_id = $1 ORDER BY seq",
        )
        .bind(user.id)
        .fetch_all(db)
        .await
        .unwrap();
        out.push(ids);
    }
    out
}

pub struct UploadReport {
    pub unacknowledged: usize,
    pub failure_kinds: String,
    pub completed_notifications: i64,
}

/// Every acknowledged upload: one file, one version, completed once, notified once, its
/// bytes downloadable. Unacknowledged commits are retried uploads' twins.
pub async fn check_uploads(
    cluster: &Cluster,
    base: &str,
    users: &[User],
    log: &UploadLog,
) -> UploadReport {
    let db = cluster.owner();
    let acked: HashMap<Uuid, &Ack> = log.acks.iter().map(|a| (a.file_id, a)).collect();
    assert_eq!(acked.len(), log.acks.len(), "one file acknowledged twice");
    let rows: Vec<(Uuid, i64, i64, i64, i64, String)> = sqlx::query_as(
        "SELECT e.aggregate_id::uuid,
                count(*) FILTER (WHERE e.event_type = 'Uploaded'),
                count(*) FILTER (WHERE e.event_type = 'VersionCompleted'),
                (SELECT count(*) FROM file_versions v WHERE v.file_id = e.aggregate_id::uuid AND v.status = 'completed'),
                (SELECT count(*) FROM notifications n WHERE n.file_id = e.aggregate_id::uuid AND n.kind = 'version_completed'),
                max(e.payload::jsonb #>> '{Uploaded,version,sha256}')
           FROM events e WHERE e.event_type IN ('Uploaded', 'VersionCompleted')
          GROUP BY e.aggregate_id",
    )
    .fetch_all(db)
    .await
    .unwrap();
    let mut seen = HashSet::new();
    let mut unacknowledged = 0;
    let acked_shas: HashSet<&str> = log.acks.iter().map(|a| a.sha256.as_str()).collect();
    for (file, uploaded, completed, versions, notified, sha) in &rows {
        let counts = (*uploaded, *completed, *versions, *notified);
        assert_eq!(
            counts,
            (1, 1, 1, 1),
            "file {file}: (Uploaded, VersionCompleted, completed versions, notifications)"
        );
        match acked.get(file) {
            Some(ack) => {
                assert_eq!(
                    &ack.sha256, sha,
                    "file {file}: other bytes than acknowledged"
                );
                seen.insert(*file);
            }
            // Committed, but the answer died with the instance: the client retried the
            // same bytes, and that retry was acknowledged.
            None => {
                unacknowledged += 1;
                assert!(
                    acked_shas.contains(sha.as_str()),
                    "file {file}: committed, never acknowledged, never retried"
                );
            }
        }
    }
    let lost: Vec<&Uuid> = acked.keys().filter(|f| !seen.contains(*f)).collect();
    assert!(
        lost.is_empty(),
        "acknowledged but not in the event store: {lost:?}"
    );

    // The bytes, through the proxy (the surviving instance).
    let http = reqwest::Client::new();
    let tokens: HashMap<usize, &str> = users
        .iter()
        .enumerate()
        .map(|(i, u)| (i, u.token.as_str()))
        .collect();
    for ack in &log.acks {
        let mut body = None;
        for token in tokens.values() {
            let r = http
                .get(format!("{base}/v1/files/{}/content", ack.file_id))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            if r.status().is_success() {
                body = Some(r.bytes().await.unwrap());
                break;
            }
        }
        let body = body.unwrap_or_else(|| panic!("file {} not downloadable", ack.file_id));
        assert_eq!(hex::encode(Sha256::digest(&body)), ack.sha256);
    }

    // Failures are the kill's: the proxy's 502 or a dropped connection, nothing else.
    let mut kinds: HashMap<&str, usize> = HashMap::new();
    for f in &log.failures {
        let kind = if f.starts_with("transport") {
            "transport"
        } else {
            f.as_str()
        };
        assert!(
            kind == "transport"
                || kind.starts_with("502")
                || kind.starts_with("503")
                || kind.starts_with("504"),
            "upload failed with {f}"
        );
        *kinds.entry(kind).or_default() += 1;
    }
    let completed_notifications: i64 =
        sqlx::query_scalar("SELECT count(*) FROM notifications WHERE kind = 'version_completed'")
            .fetch_one(db)
            .await
            .unwrap();
    UploadReport {
        unacknowledged,
        failure_kinds: format!("{kinds:?}"),
        completed_notifications,
    }
}

/// Each stream saw exactly its user's rows, in order, once; the killed instance's
/// streams dropped and continued on the survivor.
pub fn check_streams(
    streams: &[Stream],
    expected: &[Vec<String>],
    on_victim: &[usize],
    survivor: &str,
) {
    for (i, stream) in streams.iter().enumerate() {
        let log = stream.log.lock().unwrap();
        let unique: HashSet<&String> = log.ids.iter().collect();
        assert_eq!(unique.len(), log.ids.len(), "stream {i}: a duplicate event");
        assert!(
            log.ids.windows(2).all(|w| order(&w[0]) < order(&w[1])),
            "stream {i}: out of order"
        );
        assert_eq!(
            log.ids, expected[stream.user],
            "stream {i}: not exactly its user's rows"
        );
        if on_victim.contains(&i) {
            assert!(
                log.drops >= 1,
                "stream {i} on the killed instance never dropped"
            );
            assert_eq!(log.upstream(), Some(survivor), "stream {i}");
        }
        assert!(
            log.refused
                .iter()
                .all(|r| r.contains("502") || !r.starts_with('4')),
            "stream {i}: {:?}",
            log.refused
        );
    }
}

/// A fresh stream through the proxy with `Last-Event-ID` from the middle of a user's
/// rows replays exactly the rest: the header reaches the instance.
pub async fn check_resume(base: &str, user: &User, rows: &[String]) {
    let middle = rows.len() / 2;
    let stop = CancellationToken::new();
    let log = Arc::new(Mutex::new(SseLog::default()));
    let task = sse_client(
        base.to_string(),
        user.token.clone(),
        Some(rows[middle].clone()),
        stop.clone(),
        log.clone(),
    );
    let want = rows.len() - middle - 1;
    eventually(
        "the resumed stream caught up",
        Duration::from_secs(10),
        || {
            let have = log.lock().unwrap().ids.len();
            async move {
                if have >= want {
                    Ok(())
                } else {
                    Err(format!("{have} of {want}"))
                }
            }
        },
    )
    .await;
    stop.cancel();
    task.await.unwrap();
    assert_eq!(log.lock().unwrap().ids, rows[middle + 1..]);
}
