//! What travels from the `notifications` projector to SSE clients: the row as clients
//! see it, the envelope published on Redis, and the SSE event id.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A notification or version-status change as `GET /v1/notifications` and
/// `GET /v1/events` show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NotificationView {
    pub id: Uuid,
    /// The SSE event id of this row, `<transaction_id>-<global_position>`.
    pub event_id: String,
    /// `version_completed`, `duplicate`, `virus_found`, `processing_failed`,
    /// `file_shared` (the file was shared with you: `version_number` and `status` are
    /// its latest version's), `version_status` (a status change that is not a
    /// notification; SSE only), or `webhook_disabled` (to every admin of the tenant:
    /// a webhook endpoint was disabled after a run of failed deliveries; names no file).
    pub kind: String,
    /// The file; null for tenant-level kinds (`webhook_disabled`), as are the next three.
    pub file_id: Option<Uuid>,
    /// The file's display name when the event happened.
    pub file_name: Option<String>,
    pub version_number: Option<i32>,
    /// The version's status after the event (`file_status`).
    pub status: Option<String>,
    /// Kind-specific: `signature` (virus_found), `duplicate_of_version` (duplicate),
    /// `attempt` (processing, queued, processing_failed), `size_bytes`/`mime_type`
    /// (version_completed), `restored_from_version` (a restore), `access`
    /// (file_shared), `endpoint_id`/`reason` (webhook_disabled).
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    /// A sentence for people, derived from the fields above.
    pub message: String,
    pub created_at: DateTime<Utc>,
    pub read_at: Option<DateTime<Utc>>,
}

impl NotificationView {
    /// Status-only rows are streamed but not listed as notifications.
    pub fn is_notification(&self) -> bool {
        self.kind != STATUS_KIND
    }
}

/// The kind of rows that only report a status change.
pub const STATUS_KIND: &str = "version_status";

/// The kind of the tenant-level row that tells admins a webhook endpoint was disabled.
pub const WEBHOOK_DISABLED_KIND: &str = "webhook_disabled";

/// The text shown to people; one place, so the list and the stream agree.
pub fn message(
    kind: &str,
    file_name: Option<&str>,
    version: Option<i32>,
    status: Option<&str>,
    details: &serde_json::Value,
) -> String {
    if kind == WEBHOOK_DISABLED_KIND {
        let endpoint = details["endpoint_id"].as_str().unwrap_or("?");
        return match details["reason"].as_str() {
            Some(reason) => format!("Webhook endpoint {endpoint} was disabled: {reason}"),
            None => format!("Webhook endpoint {endpoint} was disabled"),
        };
    }
    let (file_name, version, status) = (
        file_name.unwrap_or("?"),
        version.unwrap_or(0),
        status.unwrap_or("?"),
    );
    match kind {
        "version_completed" => format!("\"{file_name}\" version {version} is ready"),
        "duplicate" => match details["duplicate_of_version"].as_i64() {
            Some(n) => format!("\"{file_name}\" version {version} duplicates version {n}"),
            None => format!("\"{file_name}\" version {version} is a duplicate"),
        },
        "virus_found" => match details["signature"].as_str() {
            Some(sig) => {
                format!("\"{file_name}\" version {version} failed the virus scan: {sig}")
            }
            None => format!("\"{file_name}\" version {version} failed the virus scan"),
        },
        "processing_failed" => format!("\"{file_name}\" version {version} could not be processed"),
        "file_shared" => match details["access"].as_str() {
            Some(access) => format!("\"{file_name}\" was shared with you as {access}"),
            None => format!("\"{file_name}\" was shared with you"),
        },
        _ => format!("\"{file_name}\" version {version} is {status}"),
    }
}

/// The message published on `{REDIS_KEY_PREFIX}events:{tenant}` for every new row.
/// `seq` lets a live client see whether it missed a row (lease hand-over between
/// projector instances can reorder publications; a lost message leaves a gap).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Published {
    pub tenant_id: Uuid,
    pub recipient_id: Uuid,
    pub seq: i64,
    pub row: NotificationView,
}

/// How far one of the user's resumable uploads has got, as `GET /v1/events` streams it
/// (`event: upload_progress`, no id: progress is not stored, so it is not resumable;
/// `HEAD /v1/uploads/{id}` is the truth after a reconnect).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UploadProgress {
    pub upload_id: Uuid,
    /// Bytes received so far (while a chunk streams in, some are not durable yet).
    pub bytes_received: u64,
    /// `None` while the length is deferred.
    pub length: Option<u64>,
    /// `receiving`, or `completed` once the bytes joined the processing pipeline (then
    /// the file's `version_status` events follow).
    pub state: String,
    pub file_id: Option<Uuid>,
    pub version_id: Option<Uuid>,
    pub version_number: Option<u32>,
}

/// The message published on the tenant's channel for upload progress.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PublishedProgress {
    pub tenant_id: Uuid,
    pub recipient_id: Uuid,
    pub progress: UploadProgress,
}

/// The Redis channel of a tenant's live events.
pub fn channel(key_prefix: &str, tenant: Uuid) -> String {
    format!("{key_prefix}events:{tenant}")
}

/// An SSE event id: the catch-up position of the event that produced the row. Ordered
/// as the projector processed events, so "after this id" never skips a row (a smaller
/// global position may commit later; its transaction id is then larger).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct EventId {
    pub transaction_id: u64,
    pub global_position: i64,
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.transaction_id, self.global_position)
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("an event id is <transaction_id>-<global_position>, two non-negative integers")]
pub struct BadEventId;

impl FromStr for EventId {
    type Err = BadEventId;

    fn from_str(s: &str) -> Result<Self, BadEventId> {
        let (txid, pos) = s.split_once('-').ok_or(BadEventId)?;
        // Exactly what the API documents (`^[0-9]{1,18}-[0-9]{1,18}$`): no sign, no
        // space, no more digits than a position of this log will ever have.
        let digits = |t: &str| (1..=18).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_digit());
        if !digits(txid) || !digits(pos) {
            return Err(BadEventId);
        }
        Ok(EventId {
            transaction_id: txid.parse().map_err(|_| BadEventId)?,
            global_position: pos.parse().map_err(|_| BadEventId)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_round_trip_and_order_by_transaction_first() {
        let id: EventId = "101-10".parse().unwrap();
        assert_eq!(id.to_string(), "101-10");
        // The later transaction sorts after, even with a smaller position.
        assert!("100-11".parse::<EventId>().unwrap() < id);
        assert_eq!("0-0".parse::<EventId>().unwrap(), EventId::default());
    }

    #[test]
    fn malformed_event_ids_are_refused() {
        for bad in [
            "",
            "-",
            "1",
            "1-",
            "-1",
            "a-1",
            "1-b",
            "1--1",
            "1-2-3",
            "+1-2",
            "99999999999999999999-1",
            "1234567890123456789-1",
            "1-1234567890123456789",
            " 1-2",
            "1-2 ",
        ] {
            assert_eq!(bad.parse::<EventId>(), Err(BadEventId), "{bad:?}");
        }
    }

    #[test]
    fn messages_name_the_file_and_version() {
        let d = serde_json::json!({"duplicate_of_version": 1});
        assert_eq!(
            message("duplicate", Some("a.pdf"), Some(2), Some("duplicate"), &d),
            "\"a.pdf\" version 2 duplicates version 1"
        );
        let d = serde_json::json!({"signature": "Eicar-Test-Signature"});
        assert!(
            message("virus_found", Some("a"), Some(1), Some("virus_failed"), &d)
                .ends_with("Eicar-Test-Signature")
        );
        let d = serde_json::json!({"endpoint_id": "e1", "reason": "20 deliveries failed"});
        assert_eq!(
            message(WEBHOOK_DISABLED_KIND, None, None, None, &d),
            "Webhook endpoint e1 was disabled: 20 deliveries failed"
        );
    }
}
