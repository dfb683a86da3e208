//! `notifications` (+ its helper `notification_recipients`): one row per version status
//! change of a file, addressed to the file's owner. Kinds `version_completed`,
//! `duplicate`, `virus_found` and `processing_failed` are the notifications users list
//! and mark read; `version_status` rows only feed the live stream, so that resuming it
//! (`GET /v1/events` with `Last-Event-ID`) is lossless from this one table.
//!
//! Deterministic: ids are derived from the event's position, times are `recorded_at`,
//! `seq` counts each recipient's rows in catch-up order, and the recipient comes from
//! this projector's own copy of `FileCreated` (never from another projector's table,
//! whose progress may differ). Read state comes from `NotificationRead` events.
//! After a live batch commits, every new row is published on Redis (src/live).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::record::CatchUpPosition;
use super::{EventRecord, Projector, Reactions};
use crate::aggregates::file::Original;
use crate::aggregates::{FileEvent, NotificationEvent};
use crate::live::message::{self, EventId, NotificationView, Published, STATUS_KIND};

/// Without reactions (CLI, rebuilds, tests) nothing is published.
#[derive(Default)]
pub struct NotificationsProjector {
    reactions: Option<Reactions>,
    /// The rows of the batch in flight, handed from `apply` to `after_commit`; keyed by
    /// the batch's last position so rows of a rolled-back batch are never published.
    pending: Mutex<Option<(CatchUpPosition, Vec<Published>)>>,
}

impl NotificationsProjector {
    pub fn live(reactions: Reactions) -> Self {
        NotificationsProjector {
            reactions: Some(reactions),
            pending: Mutex::new(None),
        }
    }
}

/// The id of the row an event produced: a UUIDv8 from SHA-256 over a domain tag, the
/// tenant and the event's global position (unique in the log). Stable across rebuilds.
pub fn notification_id(tenant_id: Uuid, global_position: i64) -> Uuid {
    let mut hasher = Sha256::new();
    hasher.update(b"chronicle:notification\0");
    hasher.update(tenant_id.as_bytes());
    hasher.update(global_position.to_be_bytes());
    let digest = hasher.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

#[derive(Clone)]
struct Recipient {
    owner_id: Uuid,
    display_name: String,
}

/// A row before its `seq` is known.
struct NewRow {
    tenant_id: Uuid,
    recipient_id: Uuid,
    position: CatchUpPosition,
    kind: &'static str,
    file_id: Uuid,
    file_name: String,
    version_number: u32,
    status: &'static str,
    details: serde_json::Value,
    created_at: DateTime<Utc>,
}

/// What a file event means for the owner: (kind, version, status, details), or nothing.
fn classify(event: &FileEvent) -> Option<(&'static str, u32, &'static str, serde_json::Value)> {
    Some(match event {
        FileEvent::Uploaded { version_number, .. } => {
            (STATUS_KIND, *version_number, "uploaded", json!({}))
        }
        FileEvent::ProcessingStarted {
            version_number,
            attempt,
        } => (
            STATUS_KIND,
            *version_number,
            "processing",
            json!({ "attempt": attempt }),
        ),
        // The worker's reason is for operators (it may name paths or hosts): not shown.
        FileEvent::ProcessingFailed {
            version_number,
            attempt,
            last_attempt,
            ..
        } => {
            let details = json!({ "attempt": attempt });
            if *last_attempt {
                ("processing_failed", *version_number, "failed", details)
            } else {
                (STATUS_KIND, *version_number, "queued", details)
            }
        }
        FileEvent::VirusFailed {
            version_number,
            signature,
        } => (
            "virus_found",
            *version_number,
            "virus_failed",
            json!({ "signature": signature }),
        ),
        FileEvent::DuplicateDetected {
            version_number,
            original: Original::ThisFile { version_number: of },
        } => (
            "duplicate",
            *version_number,
            "duplicate",
            json!({ "duplicate_of_version": of }),
        ),
        FileEvent::VersionCompleted {
            version_number,
            result,
        } => (
            "version_completed",
            *version_number,
            "completed",
            json!({ "size_bytes": result.size_bytes, "mime_type": result.detected_mime }),
        ),
        FileEvent::VersionRestored {
            version_number,
            from_version,
            ..
        } => (
            STATUS_KIND,
            *version_number,
            "completed",
            json!({ "restored_from_version": from_version }),
        ),
        _ => return None,
    })
}

fn decode<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, sqlx::Error> {
    serde_json::from_str(text).map_err(|err| sqlx::Error::Decode(Box::new(err)))
}

#[async_trait]
impl Projector for NotificationsProjector {
    fn name(&self) -> &'static str {
        "notifications"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["notification_recipients", "notifications"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[EventRecord],
    ) -> Result<(), sqlx::Error> {
        // Streams of type `file` whose id is not a UUID are not addressable files
        // (tests, benchmarks); the files projector skips them too.
        let file_events: Vec<(&EventRecord, Uuid)> = events
            .iter()
            .filter(|e| e.aggregate_type == "file")
            .filter_map(|e| Uuid::parse_str(&e.aggregate_id).ok().map(|id| (e, id)))
            .collect();
        let mut files = load_recipients(conn, &file_events).await?;
        let mut changed: BTreeSet<(Uuid, Uuid)> = BTreeSet::new();
        let mut rows = Vec::new();
        let mut reads: Vec<(Uuid, Uuid, DateTime<Utc>)> = Vec::new();
        for e in events {
            if e.aggregate_type == "notification" {
                let NotificationEvent::NotificationRead = decode(&e.payload)?;
                if let Ok(id) = Uuid::parse_str(&e.aggregate_id) {
                    reads.push((e.tenant_id, id, e.recorded_at));
                }
            }
        }
        for (e, file_id) in file_events {
            let key = (e.tenant_id, file_id);
            let event: FileEvent = decode(&e.payload)?;
            match &event {
                FileEvent::FileCreated {
                    owner_id,
                    display_name,
                } => {
                    files.insert(
                        key,
                        Recipient {
                            owner_id: owner_id.0,
                            display_name: display_name.clone(),
                        },
                    );
                    changed.insert(key);
                }
                FileEvent::Renamed { display_name } => {
                    if let Some(r) = files.get_mut(&key) {
                        r.display_name = display_name.clone();
                        changed.insert(key);
                    }
                }
                _ => {}
            }
            let Some((kind, version_number, status, details)) = classify(&event) else {
                continue;
            };
            let Some(r) = files.get(&key) else {
                tracing::warn!(file = %file_id, "file event without FileCreated; no notification");
                continue;
            };
            rows.push(NewRow {
                tenant_id: e.tenant_id,
                recipient_id: r.owner_id,
                position: e.position,
                kind,
                file_id,
                file_name: r.display_name.clone(),
                version_number,
                status,
                details,
                created_at: e.recorded_at,
            });
        }
        save_recipients(conn, &files, &changed).await?;
        let published = insert_rows(conn, rows).await?;
        mark_read(conn, reads).await?;
        if self.reactions.is_some()
            && let Some(last) = events.last()
        {
            *self.pending.lock().unwrap_or_else(|e| e.into_inner()) =
                Some((last.position, published));
        }
        Ok(())
    }

    async fn after_commit(&self, events: &[EventRecord]) {
        let (Some(reactions), Some(last)) = (&self.reactions, events.last()) else {
            return;
        };
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let Some((_, rows)) = pending.filter(|(p, _)| *p == last.position) else {
            return;
        };
        if !rows.is_empty() {
            publish(reactions, &rows).await;
        }
    }
}

/// The recipients of the files these events concern, as stored before this batch.
async fn load_recipients(
    conn: &mut PgConnection,
    file_events: &[(&EventRecord, Uuid)],
) -> Result<HashMap<(Uuid, Uuid), Recipient>, sqlx::Error> {
    let keys: BTreeSet<(Uuid, Uuid)> = file_events
        .iter()
        .map(|(e, id)| (e.tenant_id, *id))
        .collect();
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let (tenants, ids): (Vec<Uuid>, Vec<Uuid>) = keys.into_iter().unzip();
    let rows = sqlx::query(
        "SELECT r.tenant_id, r.file_id, r.owner_id, r.display_name
           FROM notification_recipients r
           JOIN unnest($1::uuid[], $2::uuid[]) AS k(tenant_id, file_id) USING (tenant_id, file_id)",
    )
    .bind(tenants)
    .bind(ids)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            (
                (row.get("tenant_id"), row.get("file_id")),
                Recipient {
                    owner_id: row.get("owner_id"),
                    display_name: row.get("display_name"),
                },
            )
        })
        .collect())
}

async fn save_recipients(
    conn: &mut PgConnection,
    files: &HashMap<(Uuid, Uuid), Recipient>,
    changed: &BTreeSet<(Uuid, Uuid)>,
) -> Result<(), sqlx::Error> {
    if changed.is_empty() {
        return Ok(());
    }
    let (mut tenants, mut ids, mut owners, mut names) = (vec![], vec![], vec![], vec![]);
    for key in changed {
        let r = &files[key];
        tenants.push(key.0);
        ids.push(key.1);
        owners.push(r.owner_id);
        names.push(r.display_name.clone());
    }
    sqlx::query(
        "INSERT INTO notification_recipients (tenant_id, file_id, owner_id, display_name)
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[])
         ON CONFLICT (tenant_id, file_id) DO UPDATE SET display_name = EXCLUDED.display_name",
    )
    .bind(tenants)
    .bind(ids)
    .bind(owners)
    .bind(names)
    .execute(conn)
    .await?;
    Ok(())
}

/// Numbers the rows per recipient (continuing from the stored maximum), inserts them,
/// and returns them as they will be published.
async fn insert_rows(
    conn: &mut PgConnection,
    rows: Vec<NewRow>,
) -> Result<Vec<Published>, sqlx::Error> {
    if rows.is_empty() {
        return Ok(vec![]);
    }
    let recipients: BTreeSet<(Uuid, Uuid)> =
        rows.iter().map(|r| (r.tenant_id, r.recipient_id)).collect();
    let (tenants, users): (Vec<Uuid>, Vec<Uuid>) = recipients.into_iter().unzip();
    let mut next: BTreeMap<(Uuid, Uuid), i64> = sqlx::query(
        "SELECT k.tenant_id, k.recipient_id,
                coalesce((SELECT max(n.seq) FROM notifications n
                           WHERE n.tenant_id = k.tenant_id AND n.recipient_id = k.recipient_id), 0) AS seq
           FROM unnest($1::uuid[], $2::uuid[]) AS k(tenant_id, recipient_id)",
    )
    .bind(tenants)
    .bind(users)
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|row| ((row.get("tenant_id"), row.get("recipient_id")), row.get("seq")))
    .collect();

    let mut published = Vec::with_capacity(rows.len());
    for r in rows {
        let seq = next.entry((r.tenant_id, r.recipient_id)).or_insert(0);
        *seq += 1;
        let version_number = r.version_number as i32;
        let event_id = EventId {
            transaction_id: r.position.transaction_id,
            global_position: r.position.global_position,
        };
        published.push(Published {
            tenant_id: r.tenant_id,
            recipient_id: r.recipient_id,
            seq: *seq,
            row: NotificationView {
                id: notification_id(r.tenant_id, r.position.global_position),
                event_id: event_id.to_string(),
                kind: r.kind.to_string(),
                file_id: r.file_id,
                message: message::message(
                    r.kind,
                    &r.file_name,
                    version_number,
                    r.status,
                    &r.details,
                ),
                file_name: r.file_name,
                version_number,
                status: r.status.to_string(),
                details: r.details,
                created_at: r.created_at,
                read_at: None,
            },
        });
    }

    let mut cols = Columns::default();
    for p in &published {
        cols.push(p);
    }
    sqlx::query(
        "INSERT INTO notifications (tenant_id, id, recipient_id, seq, transaction_id, global_position,
                                    kind, file_id, file_name, version_number, status, details, created_at)
         SELECT t, i, r, s, x::xid8, p, k, f, n, v, st::file_status, d::jsonb, c
           FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::int8[], $5::text[], $6::int8[], $7::text[],
                       $8::uuid[], $9::text[], $10::int4[], $11::text[], $12::text[], $13::timestamptz[])
                AS u(t, i, r, s, x, p, k, f, n, v, st, d, c)",
    )
    .bind(cols.tenants)
    .bind(cols.ids)
    .bind(cols.recipients)
    .bind(cols.seqs)
    .bind(cols.xids)
    .bind(cols.positions)
    .bind(cols.kinds)
    .bind(cols.files)
    .bind(cols.names)
    .bind(cols.versions)
    .bind(cols.statuses)
    .bind(cols.details)
    .bind(cols.created)
    .execute(conn)
    .await?;
    Ok(published)
}

/// Column arrays for one `unnest` insert.
#[derive(Default)]
struct Columns {
    tenants: Vec<Uuid>,
    ids: Vec<Uuid>,
    recipients: Vec<Uuid>,
    seqs: Vec<i64>,
    xids: Vec<String>,
    positions: Vec<i64>,
    kinds: Vec<String>,
    files: Vec<Uuid>,
    names: Vec<String>,
    versions: Vec<i32>,
    statuses: Vec<String>,
    details: Vec<String>,
    created: Vec<DateTime<Utc>>,
}

impl Columns {
    fn push(&mut self, p: &Published) {
        let id: EventId = p.row.event_id.parse().expect("formatted above");
        self.tenants.push(p.tenant_id);
        self.ids.push(p.row.id);
        self.recipients.push(p.recipient_id);
        self.seqs.push(p.seq);
        self.xids.push(id.transaction_id.to_string());
        self.positions.push(id.global_position);
        self.kinds.push(p.row.kind.clone());
        self.files.push(p.row.file_id);
        self.names.push(p.row.file_name.clone());
        self.versions.push(p.row.version_number);
        self.statuses.push(p.row.status.clone());
        self.details.push(p.row.details.to_string());
        self.created.push(p.row.created_at);
    }
}

/// `NotificationRead` sets `read_at` once (the first read's time). The notification's
/// row always precedes its read in catch-up order: the API only records a read of a
/// row it found in the table.
async fn mark_read(
    conn: &mut PgConnection,
    reads: Vec<(Uuid, Uuid, DateTime<Utc>)>,
) -> Result<(), sqlx::Error> {
    if reads.is_empty() {
        return Ok(());
    }
    let (mut tenants, mut ids, mut ats) = (vec![], vec![], vec![]);
    for (t, i, at) in reads {
        tenants.push(t);
        ids.push(i);
        ats.push(at);
    }
    sqlx::query(
        "UPDATE notifications n SET read_at = r.at
           FROM (SELECT t, i, min(at) AS at
                   FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[]) AS u(t, i, at)
                  GROUP BY t, i) r
          WHERE n.tenant_id = r.t AND n.id = r.i AND n.read_at IS NULL",
    )
    .bind(tenants)
    .bind(ids)
    .bind(ats)
    .execute(conn)
    .await?;
    Ok(())
}

/// Publishes the batch's rows in order, in one pipeline. Best effort: a lost message
/// is recovered by clients from the table (gap in `seq`, or a hub reconnect).
async fn publish(reactions: &Reactions, rows: &[Published]) {
    let mut pipe = redis::pipe();
    for p in rows {
        match serde_json::to_string(p) {
            Ok(text) => {
                pipe.cmd("PUBLISH")
                    .arg(message::channel(&reactions.key_prefix, p.tenant_id))
                    .arg(text)
                    .ignore();
            }
            Err(err) => tracing::error!(error = %err, "live message not serializable"),
        }
    }
    for attempt in 1..=2 {
        let mut conn = reactions.redis.clone();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_tenant_scoped() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        assert_eq!(notification_id(a, 7), notification_id(a, 7));
        assert_ne!(notification_id(a, 7), notification_id(a, 8));
        assert_ne!(notification_id(a, 7), notification_id(b, 7));
        assert_eq!(notification_id(a, 7).get_version_num(), 8);
    }

    #[test]
    fn only_status_changes_become_rows() {
        let other = FileEvent::DuplicateDetected {
            version_number: 2,
            original: Original::OtherFile {
                file_id: crate::ids::FileId(Uuid::nil()),
                version_number: 1,
            },
        };
        assert!(classify(&other).is_none());
        assert!(classify(&FileEvent::Deleted).is_none());
        let failed = |last_attempt| FileEvent::ProcessingFailed {
            version_number: 1,
            attempt: 3,
            reason: "disk /var/x full".into(),
            last_attempt,
        };
        let (kind, _, status, details) = classify(&failed(false)).unwrap();
        assert_eq!((kind, status), (STATUS_KIND, "queued"));
        let (kind, _, status, _) = classify(&failed(true)).unwrap();
        assert_eq!((kind, status), ("processing_failed", "failed"));
        assert!(
            !details.to_string().contains("/var"),
            "reasons stay internal"
        );
    }
}
