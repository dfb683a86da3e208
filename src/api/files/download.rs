//! Downloads: streamed from storage, never buffered. `ETag` is the SHA-256 (content
//! addressed, so it never lies), `If-None-Match` → 304, one `Range` → 206, the detected
//! content type, and a Content-Disposition that cannot break out of its header.
//! The File aggregate (not a read table) decides what may be served, so a download
//! right after completion never races the projection.
//!
//! **Privacy (decision).** Content downloads serve an image's metadata-free copy (the
//! worker's `stripped` variant: no EXIF/GPS, XMP, text chunks) whenever the version has
//! one, with its own `ETag` (`<sha256>-stripped`), size and ranges. The bytes as
//! uploaded are served only with `?original=true`, and only to the file's owner or an
//! admin; an auditor (who may read the file) gets `403`, anyone else `404` as always.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;
use uuid::Uuid;

use crate::aggregates::file::{File, FileStatus, VersionState};
use crate::api::edge::extract::{ApiPath, ApiQuery};
use crate::auth::policy::{self, file_not_found};
use crate::auth::{FileReader, TenantContext};
use crate::commands::files::load_readable as load;
use crate::error::AppError;
use crate::state::AppState;

/// The latest completed version's bytes.
#[utoipa::path(get, path = "/v1/files/{id}/content", tag = "files",
    params(("id" = Uuid, Path, description = "file id"), ContentParams),
    responses((status = 200, description = "the bytes"), (status = 302, description = "S3 mode with S3_PRESIGNED_DOWNLOAD_SECS: Location is a short-lived presigned URL of the bytes"), (status = 206), (status = 304), (status = 400), (status = 403), (status = 404), (status = 416)),
    security(("bearer" = [])))]
pub async fn current(
    State(state): State<AppState>,
    FileReader(ctx): FileReader,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(params): ApiQuery<ContentParams>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let file = load_visible(&state, &ctx, id).await?;
    let served = representation(&ctx, &file, current_version(&file)?, &params)?;
    serve(&state, &headers, &served, Disposition::Attachment).await
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ContentParams {
    /// `true`: the bytes exactly as uploaded, metadata included (owner or admin only).
    /// By default an image is served without its metadata (EXIF/GPS, XMP, text chunks).
    pub original: Option<bool>,
}

/// What a content download serves: the metadata-free copy when the version has one,
/// the original only to its owner or an admin who asks for it.
fn representation(
    ctx: &TenantContext,
    file: &File,
    version: &VersionState,
    params: &ContentParams,
) -> Result<VersionState, AppError> {
    if params.original == Some(true) {
        policy::can_download_original(ctx, file)?;
        return Ok(version.clone());
    }
    Ok(representation_for_link(version))
}

/// What a download without `?original=true` serves (content routes and links): the
/// metadata-free copy when the version has one.
pub(in crate::api) fn representation_for_link(version: &VersionState) -> VersionState {
    match version.variants.iter().find(|v| v.name == "stripped") {
        Some(stripped) => VersionState {
            storage_key: Some(stripped.storage_key.clone()),
            mime_type: stripped.mime_type.clone(),
            size_bytes: stripped.size_bytes,
            sha256: format!("{}-stripped", version.sha256),
            ..version.clone()
        },
        None => version.clone(),
    }
}

/// A given version's bytes.
#[utoipa::path(get, path = "/v1/files/{id}/versions/{n}/content", tag = "files",
    params(("id" = Uuid, Path, description = "file id"), ("n" = u32, Path, description = "version number"), ContentParams),
    responses((status = 200, description = "the bytes"), (status = 302, description = "S3 mode with S3_PRESIGNED_DOWNLOAD_SECS: Location is a short-lived presigned URL of the bytes"), (status = 206), (status = 304), (status = 400), (status = 403), (status = 404), (status = 416)),
    security(("bearer" = [])))]
pub async fn version(
    State(state): State<AppState>,
    FileReader(ctx): FileReader,
    ApiPath((id, n)): ApiPath<(Uuid, u32)>,
    ApiQuery(params): ApiQuery<ContentParams>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let file = load_visible(&state, &ctx, id).await?;
    let version = file
        .versions
        .iter()
        .find(|v| v.number == n && !v.pruned) // retention removed pruned ones
        .ok_or_else(|| AppError::NotFound("version not found".into()))?;
    if version.status != FileStatus::Completed {
        return Err(AppError::NotFound(format!(
            "version {n} has no downloadable content (status {})",
            version.status.as_str()
        )));
    }
    let served = representation(&ctx, &file, version, &params)?;
    serve(&state, &headers, &served, Disposition::Attachment).await
}

/// The current version's thumbnail (images only).
#[utoipa::path(get, path = "/v1/files/{id}/thumbnail", tag = "files",
    params(("id" = Uuid, Path, description = "file id")),
    responses((status = 200, description = "the thumbnail"), (status = 304), (status = 404)),
    security(("bearer" = [])))]
pub async fn thumbnail(
    State(state): State<AppState>,
    FileReader(ctx): FileReader,
    ApiPath(id): ApiPath<Uuid>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let file = load_visible(&state, &ctx, id).await?;
    let current = current_version(&file)?;
    let variant = current
        .variants
        .iter()
        .find(|v| v.name == "thumbnail")
        .ok_or_else(|| AppError::NotFound("this version has no thumbnail".into()))?;
    let thumb = VersionState {
        filename: format!("thumbnail-{}", current.filename),
        storage_key: Some(variant.storage_key.clone()),
        mime_type: variant.mime_type.clone(),
        size_bytes: variant.size_bytes,
        sha256: format!("{}-thumbnail", current.sha256),
        ..current.clone()
    };
    serve(&state, &headers, &thumb, Disposition::Inline).await
}

fn current_version(file: &File) -> Result<&VersionState, AppError> {
    file.current_version()
        .ok_or_else(|| AppError::NotFound("the file has no completed version yet".into()))
}

/// A file the caller may read (commands::files::load_readable) that is not in the trash.
async fn load_visible(state: &AppState, ctx: &TenantContext, id: Uuid) -> Result<File, AppError> {
    let file = load(state, ctx, id).await?;
    if file.deleted {
        return Err(file_not_found());
    }
    Ok(file)
}

#[derive(Clone, Copy)]
pub(in crate::api) enum Disposition {
    Attachment,
    Inline,
}

pub(in crate::api) async fn serve(
    state: &AppState,
    headers: &HeaderMap,
    version: &VersionState,
    disposition: Disposition,
) -> Result<Response, AppError> {
    let key = version
        .storage_key
        .as_deref()
        .ok_or_else(|| AppError::NotFound("no stored content".into()))?;
    let etag = format!("\"{}\"", version.sha256);
    let size = version.size_bytes;
    if if_none_match(headers, &etag) {
        return Ok(Response::builder()
            .status(StatusCode::NOT_MODIFIED)
            .header(header::ETAG, &etag)
            .body(Body::empty())
            .expect("static headers"));
    }
    if let Some(redirect) = presigned(state, key, version, disposition).await? {
        return Ok(redirect);
    }
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        None => None,
        Some(spec) => match parse_range(spec, size) {
            RangeSpec::One(r) => Some(r),
            RangeSpec::Ignore => None,
            RangeSpec::Unsatisfiable => return Err(AppError::RangeNotSatisfiable { size }),
        },
    };
    let object = state
        .storage
        .read(key, range.clone())
        .await
        .map_err(|e| AppError::Internal(anyhow::anyhow!("reading a blob: {e}")))?;
    let mut response = Response::builder()
        .header(header::ETAG, &etag)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_TYPE, content_type(&version.mime_type))
        .header(
            header::CONTENT_DISPOSITION,
            content_disposition(&version.filename, disposition),
        )
        .header(header::CACHE_CONTROL, "private, max-age=0, must-revalidate");
    let length = object.range.end - object.range.start;
    if range.is_some() {
        response = response.status(StatusCode::PARTIAL_CONTENT).header(
            header::CONTENT_RANGE,
            format!(
                "bytes {}-{}/{}",
                object.range.start,
                object.range.end.saturating_sub(1),
                object.size
            ),
        );
    }
    Ok(response
        .header(header::CONTENT_LENGTH, length)
        .body(Body::from_stream(object.stream))
        .expect("valid headers"))
}

/// S3 mode with `S3_PRESIGNED_DOWNLOAD_SECS`: after the same authorization, a `302` to
/// a short-lived presigned GET, so the bucket serves the bytes (ranges included) with
/// this download's name and type. `Cache-Control: no-store`: the URL expires.
async fn presigned(
    state: &AppState,
    key: &str,
    version: &VersionState,
    disposition: Disposition,
) -> Result<Option<Response>, AppError> {
    let Some(ttl) = state.config.scale.download_redirect else {
        return Ok(None);
    };
    if !state.storage.presigns() {
        return Ok(None);
    }
    let disposition = content_disposition(&version.filename, disposition);
    let kind = content_type(&version.mime_type);
    let url = state
        .storage
        .presign_get(
            key,
            ttl,
            disposition.to_str().unwrap_or("attachment"),
            kind.to_str().unwrap_or("application/octet-stream"),
        )
        .await
        .map_err(|e| AppError::Internal(anyhow::anyhow!("presigning a download: {e}")))?;
    Ok(Some(
        Response::builder()
            .status(StatusCode::FOUND)
            .header(header::LOCATION, url)
            .header(header::CACHE_CONTROL, "no-store")
            .body(Body::empty())
            .expect("a presigned URL is a valid header"),
    ))
}

fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
}

#[derive(Debug, PartialEq, Eq)]
enum RangeSpec {
    One(std::ops::Range<u64>),
    /// Syntax we do not serve as a range (several ranges, other units): the whole body.
    Ignore,
    Unsatisfiable,
}

/// `bytes=a-b`, `bytes=a-`, `bytes=-n` (RFC 9110 §14.1.2), against `size`. Positions
/// too large for a u64 saturate: an end or suffix past the file is clamped to it (206),
/// a start past the file is unsatisfiable (416); nothing overflows.
fn parse_range(spec: &str, size: u64) -> RangeSpec {
    let Some(set) = spec.trim().strip_prefix("bytes=") else {
        return RangeSpec::Ignore;
    };
    if set.contains(',') {
        return RangeSpec::Ignore;
    }
    let Some((first, last)) = set.trim().split_once('-') else {
        return RangeSpec::Unsatisfiable;
    };
    let parse = |s: &str| {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u64>().unwrap_or(u64::MAX))
    };
    let range = match (first.trim().is_empty(), last.trim().is_empty()) {
        (true, false) => match parse(last) {
            Some(0) | None => return RangeSpec::Unsatisfiable,
            Some(n) => size.saturating_sub(n)..size,
        },
        (false, true) => match parse(first) {
            Some(a) => a..size,
            None => return RangeSpec::Unsatisfiable,
        },
        (false, false) => match (parse(first), parse(last)) {
            (Some(a), Some(b)) if a <= b => a..b.saturating_add(1).min(size),
            _ => return RangeSpec::Unsatisfiable,
        },
        (true, true) => return RangeSpec::Unsatisfiable,
    };
    if range.start >= size {
        return RangeSpec::Unsatisfiable;
    }
    RangeSpec::One(range)
}

/// Text types get an explicit charset; anything unparsable is served as opaque bytes.
fn content_type(mime: &str) -> HeaderValue {
    let value = if mime == "text/plain" {
        "text/plain; charset=utf-8"
    } else {
        mime
    };
    HeaderValue::from_str(value)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"))
}

/// `attachment; filename="ascii fallback"; filename*=UTF-8''percent-encoded`: quotes,
/// backslashes, control and non-ASCII characters never reach the quoted form.
fn content_disposition(filename: &str, disposition: Disposition) -> HeaderValue {
    let kind = match disposition {
        Disposition::Attachment => "attachment",
        Disposition::Inline => "inline",
    };
    let ascii: String = filename
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = filename
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    HeaderValue::from_str(&format!(
        "{kind}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(parse_range("bytes=0-9", 100), RangeSpec::One(0..10));
        assert_eq!(parse_range("bytes=90-", 100), RangeSpec::One(90..100));
        assert_eq!(parse_range("bytes=-10", 100), RangeSpec::One(90..100));
        assert_eq!(parse_range("bytes=-500", 100), RangeSpec::One(0..100));
        assert_eq!(parse_range("bytes=95-200", 100), RangeSpec::One(95..100));
        assert_eq!(parse_range("bytes=100-", 100), RangeSpec::Unsatisfiable);
        assert_eq!(parse_range("bytes=5-2", 100), RangeSpec::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), RangeSpec::Unsatisfiable);
        assert_eq!(parse_range("bytes=x-1", 100), RangeSpec::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), RangeSpec::Ignore);
        assert_eq!(parse_range("items=0-1", 100), RangeSpec::Ignore);
        assert_eq!(parse_range("bytes=+5-9", 100), RangeSpec::Unsatisfiable);
    }

    #[test]
    fn overflowing_ranges_clamp_or_are_unsatisfiable() {
        let max = u64::MAX;
        assert_eq!(
            parse_range(&format!("bytes=0-{max}"), 100),
            RangeSpec::One(0..100)
        );
        let huge = "9".repeat(40);
        assert_eq!(
            parse_range(&format!("bytes=0-{huge}"), 100),
            RangeSpec::One(0..100)
        );
        assert_eq!(
            parse_range(&format!("bytes=-{max}"), 100),
            RangeSpec::One(0..100)
        );
        assert_eq!(
            parse_range(&format!("bytes=-{huge}"), 100),
            RangeSpec::One(0..100)
        );
        assert_eq!(
            parse_range(&format!("bytes={max}-"), 100),
            RangeSpec::Unsatisfiable
        );
        assert_eq!(
            parse_range(&format!("bytes={huge}-"), 100),
            RangeSpec::Unsatisfiable
        );
        assert_eq!(
            parse_range(&format!("bytes={max}-{max}"), 100),
            RangeSpec::Unsatisfiable
        );
    }

    #[test]
    fn content_disposition_cannot_be_broken_out_of() {
        let v = content_disposition("a\"b\\c\r\nSet-Cookie: x;é.txt", Disposition::Attachment);
        let s = v.to_str().unwrap();
        assert!(
            s.starts_with("attachment; filename=\"a_b_c__Set-Cookie: x;_.txt\"; filename*=UTF-8''")
        );
        assert!(!s.contains('\r') && !s.contains('\n'));
        assert!(s.ends_with("a%22b%5Cc%0D%0ASet-Cookie%3A%20x%3B%C3%A9.txt"));
    }
}
