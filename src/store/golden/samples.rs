//! One representative instance of every event variant of every aggregate, with fixed
//! ids so golden files are byte-for-byte reproducible.

use cqrs_es::DomainEvent;
use serde::Serialize;
use serde_json::Value;
use strum::VariantNames;
use uuid::Uuid;

use crate::aggregates::file::{Access, FinalBlob, Grantee, Link, NewVersion, Original, Variant};
use crate::aggregates::scope::Scope;
use crate::aggregates::session::RevokeReason;
use crate::aggregates::upload::{Direct, StoredParts, Tail, UploadTarget};
use crate::aggregates::{
    ApiKeyEvent, FileEvent, InboxEvent, NotificationEvent, Role, SessionEvent, TenantEvent,
    UploadEvent, UserEvent, WebhookEvent,
};
use crate::ids::{FileId, UserId};

/// Fixed ids and key: golden files are byte-for-byte reproducible.
pub(super) const TENANT: Uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001);
pub(super) const USER: Uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0002);
pub(super) const STREAM: Uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0003);
pub(super) const GOLDEN_KEY: [u8; 32] = [0x42; 32];

/// One representative instance of an event, with what the test needs to know about it.
pub(super) struct Sample {
    pub aggregate_type: &'static str,
    pub event_type: String,
    pub version: String,
    /// The stream id (the user id for user events, so the subject is `USER`).
    pub aggregate_id: String,
    /// The event as the aggregate sees it (plaintext), serialized.
    pub value: Value,
}

fn sample<E: DomainEvent + Serialize>(
    aggregate_type: &'static str,
    stream: Uuid,
    event: E,
) -> Sample {
    Sample {
        aggregate_type,
        event_type: event.event_type(),
        version: event.event_version(),
        aggregate_id: stream.to_string(),
        value: serde_json::to_value(&event).unwrap(),
    }
}

pub(super) fn user_samples() -> Vec<Sample> {
    [
        UserEvent::UserRegistered {
            handle: "ada".into(),
            name: "Ada Lovelace".into(),
            email: "ada@example.com".into(),
            role: Role::Admin,
        },
        UserEvent::RoleChanged {
            role: Role::Auditor,
        },
        UserEvent::UserBanned,
        UserEvent::UserUnbanned,
        UserEvent::UserErased {
            plaintext_events: 2,
        },
    ]
    .into_iter()
    .map(|e| sample("user", USER, e))
    .collect()
}

fn session_samples() -> Vec<Sample> {
    [
        SessionEvent::SessionStarted {
            user_id: UserId(USER),
            user_agent: "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0".into(),
            ip: "203.0.113.7".into(),
            refresh_hash: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
            refresh_expires_at: 1_700_000_000,
        },
        SessionEvent::SessionRefreshed {
            refresh_hash: "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752".into(),
            refresh_expires_at: 1_700_086_400,
        },
        SessionEvent::SessionRevoked {
            reason: RevokeReason::Logout,
        },
    ]
    .into_iter()
    .map(|e| sample("session", STREAM, e))
    .collect()
}

fn api_key_samples() -> Vec<Sample> {
    [
        ApiKeyEvent::ApiKeyCreated {
            name: "nightly backup".into(),
            role: Role::User,
            scopes: Some(vec![Scope::FilesRead, Scope::FilesWrite]),
            expires_at: Some(1_900_000_000),
            created_by: UserId(USER),
            secret_hash: "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8".into(),
            prefix: "chk_q0aVd1c2".into(),
        },
        ApiKeyEvent::ApiKeyRevoked,
    ]
    .into_iter()
    .map(|e| sample("api_key", STREAM, e))
    .collect()
}

fn tenant_samples() -> Vec<Sample> {
    let invitation = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0004);
    [
        TenantEvent::TenantCreated {
            name: "Analytical Engines Ltd".into(),
            created_by: UserId(USER),
        },
        TenantEvent::InvitationCreated {
            invitation_id: invitation,
            token_hash: "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae".into(),
            role: Role::User,
            expires_at: 1_700_604_800,
            invited_by: UserId(USER),
        },
        TenantEvent::InvitationAccepted {
            invitation_id: invitation,
            user_id: UserId(USER),
        },
    ]
    .into_iter()
    .map(|e| sample("tenant", TENANT, e))
    .collect()
}

fn webhook_samples() -> Vec<Sample> {
    [
        WebhookEvent::WebhookEndpointCreated {
            url: "https://hooks.example.com/chronicle".into(),
            event_types: vec!["FileCreated".into(), "VersionCompleted".into()],
            secret_fingerprint: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
                .into(),
        },
        WebhookEvent::WebhookEndpointUpdated {
            url: "https://hooks.example.com/v2".into(),
            event_types: vec!["*".into()],
        },
        WebhookEvent::WebhookEndpointDisabled {
            automatic: true,
            reason: "20 deliveries failed in a row".into(),
        },
        WebhookEvent::WebhookEndpointEnabled,
        WebhookEvent::WebhookEndpointDeleted,
    ]
    .into_iter()
    .map(|e| sample("webhook_endpoint", STREAM, e))
    .collect()
}

fn notification_samples() -> Vec<Sample> {
    vec![sample(
        "notification",
        STREAM,
        NotificationEvent::NotificationRead,
    )]
}

fn inbox_samples() -> Vec<Sample> {
    vec![sample(
        "inbox",
        USER,
        InboxEvent::InboxRead { up_to_seq: 17 },
    )]
}

fn file_samples() -> Vec<Sample> {
    let sha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    let blob = FinalBlob {
        storage_key: format!("tenants/{TENANT}/blobs/{sha}"),
        size_bytes: 1024,
        sha256: sha.into(),
        detected_mime: "application/pdf".into(),
    };
    [
        FileEvent::FileCreated {
            owner_id: UserId(USER),
            display_name: "report.pdf".into(),
        },
        FileEvent::Uploaded {
            version_number: 1,
            version: NewVersion {
                filename: "report.pdf".into(),
                declared_mime: "application/pdf".into(),
                size_bytes: 1024,
                temp_location: format!("tmp/{TENANT}/upload-1"),
                sha256: sha.into(),
            },
        },
        FileEvent::Hashed {
            version_number: 1,
            sha256: sha.into(),
        },
        FileEvent::DuplicateDetected {
            version_number: 2,
            original: Original::OtherFile {
                file_id: FileId(STREAM),
                version_number: 1,
            },
        },
        FileEvent::VirusFailed {
            version_number: 3,
            signature: "Eicar-Test-Signature".into(),
        },
        FileEvent::ProcessingStarted {
            version_number: 1,
            attempt: 1,
        },
        FileEvent::ProcessingFailed {
            version_number: 1,
            attempt: 1,
            reason: "storage unavailable".into(),
            last_attempt: false,
            max_attempts: 5,
        },
        FileEvent::ProcessingRetried { version_number: 1 },
        FileEvent::Optimized {
            version_number: 1,
            variant: Variant {
                name: "thumbnail".into(),
                storage_key: format!("tenants/{TENANT}/variants/{sha}/thumbnail"),
                mime_type: "image/webp".into(),
                size_bytes: 512,
            },
        },
        FileEvent::VersionCompleted {
            version_number: 1,
            result: blob.clone(),
        },
        FileEvent::Renamed {
            display_name: "report-final.pdf".into(),
        },
        FileEvent::Tagged {
            tag: "finance".into(),
        },
        FileEvent::Untagged {
            tag: "finance".into(),
        },
        FileEvent::Deleted,
        FileEvent::Restored,
        FileEvent::Purged,
        FileEvent::VersionRestored {
            version_number: 4,
            from_version: 1,
            filename: "report.pdf".into(),
            blob,
        },
        FileEvent::VersionPruned { version_number: 1 },
        FileEvent::FileShared {
            grantee: Grantee::User(UserId(USER)),
            access: Access::Viewer,
        },
        FileEvent::FileUnshared {
            grantee: Grantee::Role(Role::Auditor),
        },
        FileEvent::LegalHoldPlaced {
            reason: "litigation 2026-17".into(),
        },
        FileEvent::LegalHoldReleased,
        FileEvent::LinkCreated(Link {
            link_id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0004),
            token_sha256: sha.into(),
            version_number: Some(1),
            expires_at: chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            password_hash: Some(
                "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".into(),
            ),
            max_downloads: Some(3),
            revoked: false,
        }),
        FileEvent::LinkRevoked {
            link_id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0004),
        },
    ]
    .into_iter()
    .map(|e| sample("file", STREAM, e))
    .collect()
}

fn upload_samples() -> Vec<Sample> {
    let expires_at = chrono::DateTime::from_timestamp(1_700_086_400, 0).unwrap();
    let tail = Tail {
        key: format!("tus-tails/{TENANT}/{STREAM}/16777216-upload"),
        length: 1024,
    };
    [
        UploadEvent::UploadStarted {
            owner_id: UserId(USER),
            length: Some(16_778_240),
            max_size: 5_368_709_120,
            filename: "video.mp4".into(),
            filetype: "video/mp4".into(),
            target: UploadTarget {
                file_id: FileId(STREAM),
                new_file: true,
            },
            temp_key: format!("tmp/{TENANT}/{STREAM}"),
            expires_at,
        },
        UploadEvent::ChunkAccepted {
            from_offset: 0,
            offset: 16_778_240,
            declared_length: None,
            expires_at,
        },
        UploadEvent::UploadCompleted {
            file_id: FileId(STREAM),
            version_number: 1,
            sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".into(),
        },
        UploadEvent::UploadExpired,
        UploadEvent::UploadTerminated,
        UploadEvent::MultipartOpened {
            multipart_id: "2~multipart-upload-id".into(),
        },
        UploadEvent::PartsStored(StoredParts {
            first_part: 1,
            e_tags: vec!["\"etag-1\"".into(), "\"etag-2\"".into()],
            tail: Some(tail),
        }),
        UploadEvent::Sha256Carried {
            sha256_state: "6a09e667bb67ae853c6ef372a54ff53a510e527f9b05688c1f83d9ab5be0cd19".into(),
        },
        UploadEvent::DirectOpened(Direct {
            sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".into(),
            part_size: 8_388_608,
            parts: 13,
        }),
    ]
    .into_iter()
    .map(|e| sample("upload", STREAM, e))
    .collect()
}

/// The event enum each aggregate type's samples come from (checked against the source).
pub(super) fn event_enum_of(aggregate_type: &str) -> &'static str {
    match aggregate_type {
        "api_key" => "ApiKeyEvent",
        "file" => "FileEvent",
        "inbox" => "InboxEvent",
        "notification" => "NotificationEvent",
        "session" => "SessionEvent",
        "tenant" => "TenantEvent",
        "upload" => "UploadEvent",
        "user" => "UserEvent",
        "webhook_endpoint" => "WebhookEvent",
        other => panic!("no event enum known for {other}"),
    }
}

/// Every aggregate: its samples and the variant names the compiler knows of.
pub(super) fn all_samples() -> Vec<(&'static str, &'static [&'static str], Vec<Sample>)> {
    vec![
        ("api_key", ApiKeyEvent::VARIANTS, api_key_samples()),
        ("file", FileEvent::VARIANTS, file_samples()),
        ("inbox", InboxEvent::VARIANTS, inbox_samples()),
        (
            "notification",
            NotificationEvent::VARIANTS,
            notification_samples(),
        ),
        ("session", SessionEvent::VARIANTS, session_samples()),
        ("tenant", TenantEvent::VARIANTS, tenant_samples()),
        ("upload", UploadEvent::VARIANTS, upload_samples()),
        ("user", UserEvent::VARIANTS, user_samples()),
        (
            "webhook_endpoint",
            WebhookEvent::VARIANTS,
            webhook_samples(),
        ),
    ]
}
