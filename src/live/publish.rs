//! Publishing new rows for every instance's hub: what the `notifications` projector
//! does after its batch commits.

use std::time::Duration;

use super::message::{self, Published, PublishedProgress};

/// Publishes the batch's rows in order, in one pipeline. Best effort: a lost message
/// is recovered by clients from the table (gap in `seq`, or a hub reconnect).
pub async fn publish(redis: &redis::aio::ConnectionManager, key_prefix: &str, rows: &[Published]) {
    let mut pipe = redis::pipe();
    for p in rows {
        match serde_json::to_string(p) {
            Ok(text) => {
                pipe.cmd("PUBLISH")
                    .arg(message::channel(key_prefix, p.tenant_id))
                    .arg(text)
                    .ignore();
            }
            Err(err) => tracing::error!(error = %err, "live message not serializable"),
        }
    }
    for attempt in 1..=2 {
        let mut conn = redis.clone();
        let sent =
            tokio::time::timeout(Duration::from_secs(2), pipe.query_async::<()>(&mut conn)).await;
        match sent {
            Ok(Ok(())) => return,
            Ok(Err(err)) if attempt == 2 => {
                tracing::warn!(error = %err, rows = rows.len(), "live events not published; clients re-sync from the table")
            }
            Err(_) if attempt == 2 => {
                tracing::warn!(
                    rows = rows.len(),
                    "publishing live events timed out; clients re-sync from the table"
                )
            }
            _ => {}
        }
    }
}

/// Publishes one upload-progress message. Best effort, one try: progress is a hint, and
/// the next message (or `HEAD`) supersedes a lost one.
pub async fn publish_progress(
    redis: &redis::aio::ConnectionManager,
    key_prefix: &str,
    progress: &PublishedProgress,
) {
    let Ok(text) = serde_json::to_string(progress) else {
        return;
    };
    let mut conn = redis.clone();
    let mut cmd = redis::cmd("PUBLISH");
    cmd.arg(message::channel(key_prefix, progress.tenant_id))
        .arg(text);
    let sent = tokio::time::timeout(Duration::from_secs(1), cmd.query_async::<()>(&mut conn)).await;
    if !matches!(sent, Ok(Ok(()))) {
        tracing::debug!("upload progress not published");
    }
}
