//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz): the request parsers that
//! take attacker-controlled bytes, reachable without a database or a server. Thin
//! wrappers over the real code, so what is fuzzed is what serves requests; not an API.

use axum::http::{HeaderMap, HeaderValue, header};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::api::uploads::multipart::{boundary as multipart_boundary, read_multipart};
use crate::error::AppError;
use crate::ids::TenantId;
use crate::queries::audit::{decode_cursor, encode_cursor};
use crate::queries::cursor::CursorKey;
use crate::storage::Storage;

pub use crate::api::uploads::tus::headers::{
    Algorithm, Checksum, Metadata, checksum, is_chunk, metadata, number, require_tus_resumable,
};

/// What `read_multipart` accepted, for the fuzz target's checks.
#[derive(Debug)]
pub struct MultipartFields {
    /// Where the `file` part's bytes are, in the storage given.
    pub temp_key: String,
    pub size_bytes: u64,
    pub sha256: String,
    pub original_name: String,
    pub declared_mime: String,
    pub display_name: Option<String>,
    pub tags: Vec<String>,
}

/// An upload's multipart body, arriving in `pieces`, under the given `Content-Type`,
/// parsed as `POST /v1/files` does (boundary from the header, file part into `storage`).
pub async fn multipart(
    storage: &Storage,
    content_type: &[u8],
    pieces: Vec<Bytes>,
    max: u64,
) -> Result<MultipartFields, AppError> {
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_bytes(content_type) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    let boundary = multipart_boundary(&headers)?;
    let body = futures::stream::iter(pieces.into_iter().map(Ok::<_, std::io::Error>));
    let tenant = TenantId(Uuid::from_u128(1));
    let upload = read_multipart(storage, tenant, body, boundary, max).await?;
    Ok(MultipartFields {
        temp_key: upload.temp_key,
        size_bytes: upload.received.size_bytes,
        sha256: upload.received.sha256,
        original_name: upload.original_name,
        declared_mime: upload.declared_mime,
        display_name: upload.display_name,
        tags: upload.tags,
    })
}

/// `GET /v1/files?cursor=`: a files cursor of the default sort (`created:desc`) as the
/// listing decodes it.
pub fn files_cursor_decode(
    secret: &str,
    tenant: Uuid,
    cursor: &str,
) -> Result<(DateTime<Utc>, Uuid), AppError> {
    let sorted = CursorKey::new(secret).decode_sorted(tenant, "created:desc", cursor)?;
    let at = sorted
        .value
        .parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_micros)
        .ok_or_else(|| AppError::BadRequest("invalid cursor".into()))?;
    Ok((at, sorted.id))
}

pub fn files_cursor_encode(secret: &str, tenant: Uuid, at: DateTime<Utc>, id: Uuid) -> String {
    CursorKey::new(secret).encode_sorted(
        tenant,
        &crate::queries::cursor::SortedCursor {
            sort: "created:desc".into(),
            id,
            value: at.timestamp_micros().to_string(),
        },
    )
}

/// `GET /v1/audit?cursor=`: an audit cursor as the listing decodes it.
pub fn audit_cursor_decode(
    secret: &str,
    tenant: Uuid,
    cursor: &str,
) -> Result<(DateTime<Utc>, i64), AppError> {
    decode_cursor(&CursorKey::new(secret), tenant, cursor)
}

pub fn audit_cursor_encode(secret: &str, tenant: Uuid, at: DateTime<Utc>, id: i64) -> String {
    encode_cursor(&CursorKey::new(secret), tenant, at, id)
}

/// A correctly signed cursor around any `text`: reaches the parsing behind the signature
/// check, which forged text never gets past.
pub fn cursor_seal(secret: &str, tenant: Uuid, text: &str) -> String {
    CursorKey::new(secret).seal(tenant, text)
}
