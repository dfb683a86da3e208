//! The tus 1.0.0 request and response headers: parsed strictly (a malformed header is a
//! 400 before anything is recorded), answered uniformly.

use std::collections::HashMap;

use axum::http::{HeaderMap, HeaderValue, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::AppError;

pub const TUS_VERSION: &str = "1.0.0";
pub const EXTENSIONS: &str =
    "creation,creation-with-upload,creation-defer-length,termination,expiration,checksum";
pub const CHECKSUM_ALGORITHMS: &str = "sha1,sha256";
pub const CHUNK_CONTENT_TYPE: &str = "application/offset+octet-stream";
/// Upload-Metadata as a whole: names and short values, never file contents.
pub const MAX_METADATA: usize = 8 * 1024;
/// The shape of `Upload-Checksum`, for /openapi.json: exactly what `checksum` accepts
/// of a field value as HTTP delivers it (no whitespace around, RFC 9110 §5.5); a test
/// checks it.
pub const CHECKSUM_PATTERN: &str = concat!(
    r"^(?:[Ss][Hh][Aa]1 [ \t]*[A-Za-z0-9+/]{26}[AEIMQUYcgkosw048]=",
    r"|[Ss][Hh][Aa]256 [ \t]*[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=)$"
);
/// One `key base64value` pair of `Upload-Metadata` (the value may be omitted).
macro_rules! metadata_pair {
    () => {
        r"[\x21-\x2B\x2D-\x7E][\x21-\x2B\x2D-\x7E\t]*(?: +(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)?)?"
    };
}
/// The shape of `Upload-Metadata`, for /openapi.json: comma-separated pairs of a key
/// (visible ASCII but `,`) and an optional canonical base64 value. It admits every field
/// value (as HTTP delivers it: no whitespace around) that `metadata` accepts (a test
/// checks it), so a client told by the document that a value is invalid is told the
/// truth; what a pattern cannot say (unique keys, what the decoded values must be) the
/// parameter's description says.
pub const METADATA_PATTERN: &str = concat!(
    r"^(?:(?:",
    metadata_pair!(),
    r"|,[ \t]*(?:",
    metadata_pair!(),
    r")?)(?:[ \t]*,[ \t]*(?:",
    metadata_pair!(),
    r")?)*)?$"
);

/// `Tus-Resumable` must name the version this server speaks (412 otherwise).
pub fn require_tus_resumable(headers: &HeaderMap) -> Result<(), AppError> {
    match headers.get("tus-resumable").and_then(|v| v.to_str().ok()) {
        Some(TUS_VERSION) => Ok(()),
        Some(other) => Err(AppError::TusVersionUnsupported(format!(
            "Tus-Resumable {other:?} is not supported; this server speaks {TUS_VERSION}"
        ))),
        None => Err(AppError::TusVersionUnsupported(format!(
            "the Tus-Resumable header is required (this server speaks {TUS_VERSION})"
        ))),
    }
}

/// A non-negative integer header, or `None` when absent.
pub fn number(headers: &HeaderMap, name: &str) -> Result<Option<u64>, AppError> {
    headers
        .get(name)
        .map(|v| {
            v.to_str()
                .ok()
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| AppError::BadRequest(format!("{name} must be a whole number")))
        })
        .transpose()
}

/// Whether the request body is a chunk (`Content-Type: application/offset+octet-stream`).
pub fn is_chunk(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().unwrap_or("").trim() == CHUNK_CONTENT_TYPE)
}

/// What `Upload-Metadata` may carry.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Metadata {
    pub filename: Option<String>,
    pub filetype: Option<String>,
    /// Upload a new version of this existing file.
    pub file_id: Option<Uuid>,
}

/// `key base64value` pairs separated by commas; the value may be omitted. Unknown keys
/// are ignored (clients add their own), but every pair must be well-formed, keys unique,
/// and the values we read valid.
pub fn metadata(headers: &HeaderMap) -> Result<Metadata, AppError> {
    let Some(raw) = headers.get("upload-metadata") else {
        return Ok(Metadata::default());
    };
    let bad = |why: String| AppError::BadRequest(format!("Upload-Metadata: {why}"));
    if raw.len() > MAX_METADATA {
        return Err(bad(format!("longer than {MAX_METADATA} bytes")));
    }
    let raw = raw.to_str().map_err(|_| bad("not ASCII".into()))?;
    let mut pairs: HashMap<&str, Option<Vec<u8>>> = HashMap::new();
    for pair in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let mut parts = pair.split(' ').filter(|p| !p.is_empty());
        let key = parts.next().unwrap_or_default();
        let value = match parts.next() {
            None => None,
            Some(v) => Some(
                STANDARD
                    .decode(v)
                    .map_err(|_| bad(format!("the value of {key:?} is not base64")))?,
            ),
        };
        if parts.next().is_some() {
            return Err(bad(format!("{key:?} has more than one value")));
        }
        if pairs.insert(key, value).is_some() {
            return Err(bad(format!("{key:?} appears twice")));
        }
    }
    let text = |key: &str| -> Result<Option<String>, AppError> {
        match pairs.get(key) {
            None | Some(None) => Ok(None),
            Some(Some(bytes)) => {
                crate::api::edge::text::from_bytes(&format!("Upload-Metadata {key}"), bytes)
                    .map(|text| Some(text.to_string()))
            }
        }
    };
    let filetype = text("filetype")?;
    if let Some(t) = &filetype
        && !is_mime(t)
    {
        return Err(bad(format!("filetype {t:?} is not a media type")));
    }
    let file_id = text("file_id")?
        .map(|s| Uuid::parse_str(&s).map_err(|_| bad("file_id is not a UUID".into())))
        .transpose()?;
    Ok(Metadata {
        filename: text("filename")?,
        filetype: filetype.map(|t| t.to_ascii_lowercase()),
        file_id,
    })
}

/// `type/subtype` of RFC 6838 token characters (parameters dropped by the caller's rules:
/// we refuse them rather than guess).
pub(crate) fn is_mime(t: &str) -> bool {
    let token = |s: &str| {
        !s.is_empty()
            && s.len() <= 127
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    matches!(t.split_once('/'), Some((a, b)) if token(a) && token(b))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha1,
    Sha256,
}

/// `Upload-Checksum: <algorithm> <base64 digest>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksum {
    pub algorithm: Algorithm,
    pub digest: Vec<u8>,
}

pub fn checksum(headers: &HeaderMap) -> Result<Option<Checksum>, AppError> {
    let Some(raw) = headers.get("upload-checksum") else {
        return Ok(None);
    };
    let bad = |why: &str| AppError::BadRequest(format!("Upload-Checksum: {why}"));
    let raw = raw.to_str().map_err(|_| bad("not ASCII"))?;
    let (name, value) = raw
        .trim()
        .split_once(' ')
        .ok_or_else(|| bad("expected `<algorithm> <base64 digest>`"))?;
    let (algorithm, len) = match name.to_ascii_lowercase().as_str() {
        "sha1" => (Algorithm::Sha1, 20),
        "sha256" => (Algorithm::Sha256, 32),
        _ => return Err(bad("the algorithm must be sha1 or sha256")),
    };
    let digest = STANDARD
        .decode(value.trim())
        .map_err(|_| bad("the digest is not base64"))?;
    if digest.len() != len {
        return Err(bad("the digest has the wrong length for its algorithm"));
    }
    Ok(Some(Checksum { algorithm, digest }))
}

/// An HTTP date (RFC 9110 IMF-fixdate), as `Upload-Expires` wants it.
pub fn http_date(at: DateTime<Utc>) -> String {
    at.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// Adds `name: value` (values we build are always valid header text).
pub fn set(headers: &mut HeaderMap, name: &'static str, value: impl ToString) {
    if let Ok(v) = HeaderValue::from_str(&value.to_string()) {
        headers.insert(name, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: &'static str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn metadata_pairs_are_decoded() {
        let id = Uuid::from_u128(5);
        let raw = format!(
            "filename {},filetype {},file_id {},is_confidential",
            STANDARD.encode("résumé.pdf"),
            STANDARD.encode("Application/PDF"),
            STANDARD.encode(id.to_string())
        );
        let m = metadata(&with("upload-metadata", &raw)).unwrap();
        assert_eq!(m.filename.as_deref(), Some("résumé.pdf"));
        assert_eq!(m.filetype.as_deref(), Some("application/pdf"));
        assert_eq!(m.file_id, Some(id));
    }

    #[test]
    fn malformed_metadata_is_refused() {
        for raw in [
            "filename not*base64",
            "filename YQ==,filename Yg==",
            "filename YQ== Yg==",
            "filetype dGV4dA==",        // "text": no subtype
            "file_id bm90LWEtdXVpZA==", // "not-a-uuid"
            "filename /w==",            // 0xff: not UTF-8
        ] {
            let err = metadata(&with("upload-metadata", raw)).unwrap_err();
            assert_eq!(err.code(), "bad_request", "{raw}");
        }
    }

    #[test]
    fn checksums_name_a_supported_algorithm_and_a_digest_of_its_size() {
        let sha1 = STANDARD.encode([0u8; 20]);
        let c = checksum(&with("upload-checksum", &format!("sha1 {sha1}")))
            .unwrap()
            .unwrap();
        assert_eq!(c.algorithm, Algorithm::Sha1);
        for raw in [
            format!("md5 {sha1}"),
            format!("sha256 {sha1}"),
            "sha1".to_string(),
            "sha1 ***".to_string(),
        ] {
            assert!(checksum(&with("upload-checksum", &raw)).is_err(), "{raw}");
        }
    }

    #[test]
    fn only_tus_1_0_0_is_spoken() {
        assert!(require_tus_resumable(&with("tus-resumable", "1.0.0")).is_ok());
        let err = require_tus_resumable(&with("tus-resumable", "0.2.2")).unwrap_err();
        assert_eq!(err.status().as_u16(), 412);
        assert!(require_tus_resumable(&HeaderMap::new()).is_err());
    }

    #[test]
    fn numbers_are_plain_digits() {
        assert_eq!(
            number(&with("upload-offset", "42"), "upload-offset").unwrap(),
            Some(42)
        );
        assert!(number(&with("upload-offset", "-1"), "upload-offset").is_err());
        assert!(number(&with("upload-offset", "+1"), "upload-offset").is_err());
        assert_eq!(number(&HeaderMap::new(), "upload-offset").unwrap(), None);
    }

    /// The patterns /openapi.json gives for `Upload-Metadata` and `Upload-Checksum`
    /// admit every field value the parsers accept (so a value the document calls invalid
    /// is refused), and refuse plainly malformed ones. Field values as HTTP delivers
    /// them: without whitespace around (RFC 9110 §5.5).
    #[test]
    fn documented_patterns_admit_what_the_parsers_accept() {
        let metadata_shape = regex::Regex::new(METADATA_PATTERN).unwrap();
        let checksum_shape = regex::Regex::new(CHECKSUM_PATTERN).unwrap();
        let sha1 = STANDARD.encode([7u8; 20]);
        let sha256 = STANDARD.encode([9u8; 32]);
        for ok in [
            "",
            "filename YQ==",
            "filename  YQ== , is_confidential,filetype dGV4dC9wbGFpbg==",
            ", ,k",
            "file_id",
        ] {
            assert!(metadata(&with("upload-metadata", ok)).is_ok(), "{ok}");
            assert!(metadata_shape.is_match(ok), "{ok}");
        }
        for bad in [
            "filename not*base64",
            "filename YR==",
            "filename YQ== Yg==",
            " k",
        ] {
            assert!(!metadata_shape.is_match(bad), "{bad}");
        }
        for ok in [format!("sha1 {sha1}"), format!("SHA256 \t {sha256}")] {
            assert!(checksum(&with("upload-checksum", &ok)).is_ok(), "{ok}");
            assert!(checksum_shape.is_match(&ok), "{ok}");
        }
        for bad in [
            format!("md5 {sha1}"),
            format!("sha256 {sha1}"),
            format!(" sha1 {sha1}"),
            "sha1".into(),
        ] {
            assert!(!checksum_shape.is_match(&bad), "{bad}");
        }

        let pieces = [
            "filename",
            "file_id",
            "k",
            " ",
            "  ",
            ",",
            "\t",
            "YQ==",
            "Yg==",
            "YR==",
            "Zm9v",
            "Zg",
            "=",
            "*",
            "sha1",
            "SHA256",
            "Sha1",
            sha1.as_str(),
            sha256.as_str(),
        ];
        let piece = proptest::sample::select(pieces.map(String::from).to_vec());
        proptest::proptest!(|(parts in proptest::collection::vec(piece, 0..8))| {
            let raw = parts.concat();
            let raw = raw.trim_matches([' ', '\t']);
            if metadata(&with("upload-metadata", raw)).is_ok() {
                proptest::prop_assert!(metadata_shape.is_match(raw), "{:?}", raw);
            }
            if checksum(&with("upload-checksum", raw)).is_ok_and(|c| c.is_some()) {
                proptest::prop_assert!(checksum_shape.is_match(raw), "{:?}", raw);
            }
        });
    }

    #[test]
    fn upload_expires_is_an_http_date() {
        let at = DateTime::parse_from_rfc3339("2026-11-25T14:05:09Z").unwrap();
        assert_eq!(http_date(at.into()), "Wed, 25 Nov 2026 14:05:09 GMT");
    }
}
