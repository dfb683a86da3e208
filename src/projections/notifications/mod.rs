//! `notifications` (+ its helpers `notification_recipients` and `notification_members`):
//! one row per version status change of a file, addressed to the file's owner; one per
//! share with a user, to that user; and tenant-level rows (`members.rs`): a webhook
//! endpoint disabled after a run of failures, to each of the tenant's admins. Kinds `version_completed`,
//! `duplicate`, `virus_found` and `processing_failed` are the notifications users list
//! and mark read; `version_status` rows only feed the live stream, so that resuming it
//! (`GET /v1/events` with `Last-Event-ID`) is lossless from this one table.
//!
//! Deterministic: ids are derived from the event's position, times are `recorded_at`,
//! `seq` counts each recipient's rows in catch-up order, and the recipient comes from
//! this projector's own copy of `FileCreated` (never from another projector's table,
//! whose progress may differ). Read state comes from `NotificationRead` events (one
//! notification) and `InboxRead` events (all of a user's, up to a `seq`: recorded in
//! `notification_read_marks` and applied a bounded share per batch, so that clearing a
//! huge inbox never holds the projector for every tenant).
//! After a live batch commits, every new row is published on Redis (src/live).

mod members;
mod rows;

use std::collections::BTreeSet;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::PgConnection;
use uuid::Uuid;

use super::record::CatchUpPosition;
use super::{EventRecord, Projector, Reactions};
use crate::aggregates::file::{Grantee, Original};
use crate::aggregates::{FileEvent, InboxEvent, NotificationEvent};
use crate::live::message::{Published, STATUS_KIND};
use members::Members;
pub use members::tenant_notification_id;
use rows::{
    InboxRead, Recipient, insert_rows, load_recipients, mark_read, mark_some, record_inbox_reads,
    save_recipients,
};

/// The kind of the row that tells a user a file was shared with them.
pub const SHARED_KIND: &str = "file_shared";

/// How many notifications a batch (or an idle poll) marks read for the "mark all read"s
/// still being applied: ~23 µs each, so about 50 ms of the projector's time — one
/// `PACE` (src/projections/runtime.rs) — whatever the size of the inbox.
pub const READ_MARKS_PER_BATCH: i64 = 2_000;

/// Without reactions (CLI, rebuilds, tests) nothing is published.
pub struct NotificationsProjector {
    reactions: Option<Reactions>,
    /// The rows of the batch in flight, handed from `apply` to `after_commit`; keyed by
    /// the batch's last position so rows of a rolled-back batch are never published.
    pending: Mutex<Option<(CatchUpPosition, Vec<Published>)>>,
    /// Notifications marked read per batch (`READ_MARKS_PER_BATCH`; tests use less).
    read_budget: i64,
}

impl Default for NotificationsProjector {
    fn default() -> Self {
        NotificationsProjector {
            reactions: None,
            pending: Mutex::new(None),
            read_budget: READ_MARKS_PER_BATCH,
        }
    }
}

impl NotificationsProjector {
    pub fn live(reactions: Reactions) -> Self {
        NotificationsProjector {
            reactions: Some(reactions),
            ..Self::default()
        }
    }

    /// The same projector marking at most `rows` notifications read per batch.
    pub fn with_read_budget(self, rows: i64) -> Self {
        NotificationsProjector {
            read_budget: rows.max(1),
            ..self
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

/// A row before its `seq` is known. The file fields are `None` exactly for tenant-level
/// kinds.
pub(super) struct NewRow {
    pub(super) id: Uuid,
    pub(super) tenant_id: Uuid,
    pub(super) recipient_id: Uuid,
    pub(super) position: CatchUpPosition,
    pub(super) kind: &'static str,
    pub(super) file_id: Option<Uuid>,
    pub(super) file_name: Option<String>,
    pub(super) version_number: Option<u32>,
    pub(super) status: Option<&'static str>,
    pub(super) details: serde_json::Value,
    pub(super) created_at: DateTime<Utc>,
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
        FileEvent::ProcessingRetried { version_number } => (
            STATUS_KIND,
            *version_number,
            "queued",
            json!({ "retried": true }),
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
        &[
            "notification_recipients",
            "notification_members",
            "notifications",
            "notification_read_marks",
        ]
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
        let mut inbox_reads = Vec::new();
        for e in events {
            if e.aggregate_type == "notification" {
                let NotificationEvent::NotificationRead = decode(&e.payload)?;
                if let Ok(id) = Uuid::parse_str(&e.aggregate_id) {
                    reads.push((e.tenant_id, id, e.recorded_at));
                }
            } else if e.aggregate_type == "inbox" {
                let InboxEvent::InboxRead { up_to_seq } = decode(&e.payload)?;
                if let Ok(recipient_id) = Uuid::parse_str(&e.aggregate_id) {
                    inbox_reads.push(InboxRead {
                        tenant_id: e.tenant_id,
                        recipient_id,
                        up_to_seq: i64::try_from(up_to_seq).unwrap_or(i64::MAX),
                        at: e.recorded_at,
                    });
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
                            latest_version: 0,
                            latest_status: "uploaded",
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
                // A grant to a user tells the grantee (a grant to a role tells no one:
                // it may reach many users, and later holders of the role too).
                FileEvent::FileShared {
                    grantee: Grantee::User(user),
                    access,
                } => {
                    if let Some(r) = files.get(&key) {
                        rows.push(NewRow {
                            id: notification_id(e.tenant_id, e.position.global_position),
                            tenant_id: e.tenant_id,
                            recipient_id: user.0,
                            position: e.position,
                            kind: SHARED_KIND,
                            file_id: Some(file_id),
                            file_name: Some(r.display_name.clone()),
                            version_number: Some(r.latest_version),
                            status: Some(r.latest_status),
                            details: json!({ "access": access.as_str() }),
                            created_at: e.recorded_at,
                        });
                    }
                    continue;
                }
                _ => {}
            }
            let Some((kind, version_number, status, details)) = classify(&event) else {
                continue;
            };
            let Some(r) = files.get_mut(&key) else {
                tracing::warn!(file = %file_id, "file event without FileCreated; no notification");
                continue;
            };
            if version_number >= r.latest_version {
                r.latest_version = version_number;
                r.latest_status = status;
                changed.insert(key);
            }
            rows.push(NewRow {
                id: notification_id(e.tenant_id, e.position.global_position),
                tenant_id: e.tenant_id,
                recipient_id: r.owner_id,
                position: e.position,
                kind,
                file_id: Some(file_id),
                file_name: Some(r.display_name.clone()),
                version_number: Some(version_number),
                status: Some(status),
                details,
                created_at: e.recorded_at,
            });
        }
        save_recipients(conn, &files, &changed).await?;
        let mut members = Members::load(conn, events).await?;
        rows.extend(members.apply(events)?);
        members.save(conn).await?;
        // Each recipient's `seq` follows catch-up order across both kinds of rows.
        rows.sort_by_key(|r| r.position);
        let published = insert_rows(conn, rows).await?;
        mark_read(conn, reads).await?;
        record_inbox_reads(conn, inbox_reads).await?;
        if self.reactions.is_some()
            && let Some(last) = events.last()
        {
            *self.pending.lock().unwrap_or_else(|e| e.into_inner()) =
                Some((last.position, published));
        }
        Ok(())
    }

    /// The recorded "mark all read"s, a bounded share at a time (rows.rs, `mark_some`).
    async fn deferred(&self, conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
        mark_some(conn, self.read_budget).await
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
            crate::live::publish::publish(&reactions.redis, &reactions.key_prefix, &rows).await;
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
            max_attempts: 3,
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
