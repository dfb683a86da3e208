//! The text rule: every piece of text a client sends that can reach an event or a
//! database query (names, tags, emails, handles, filters, metadata values, path
//! segments, query parameters) must be valid UTF-8 without control characters
//! (Unicode category Cc: U+0000–U+001F and U+007F–U+009F, so also tab and newline).
//!
//! Why at the edge, and for all text alike: Postgres refuses NUL in `text` and in `jsonb`
//! (`\u0000`), so a NUL that reached a query answered 500, and one that reached an event
//! stalled the projectors reading it. Control characters have no place in any field the
//! API takes (none is multi-line), and invalid UTF-8 would otherwise be replaced silently.
//! A refusal is `400 bad_request` naming the field; nothing is recorded.
//!
//! The extractors (`ApiPath`, `ApiQuery`, `JsonBody`), tus `Upload-Metadata` and the
//! multipart fields apply it; the domain keeps its own checks as a second line.

use axum::extract::Request;
use axum::http::header::USER_AGENT;
use axum::http::{HeaderMap, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use percent_encoding::percent_decode;
use serde_json::Value;

use crate::error::AppError;

/// JSON fields that are secrets: hashed, never stored or queried as text. Refusing them
/// would lock out accounts registered before the rule.
const SECRET_FIELDS: &[&str] = &["password"];
/// Longest `User-Agent` recorded, in characters.
const MAX_USER_AGENT: usize = 512;

/// Refuses `text` if it holds a control character; `field` names it in the message.
pub fn check(field: &str, text: &str) -> Result<(), AppError> {
    match text.chars().find(|c| c.is_control()) {
        None => Ok(()),
        Some(c) => Err(refused(
            field,
            &format!("holds the control character U+{:04X}", c as u32),
        )),
    }
}

/// `bytes` as text under the rule: valid UTF-8, no control character.
pub fn from_bytes<'a>(field: &str, bytes: &'a [u8]) -> Result<&'a str, AppError> {
    let text = std::str::from_utf8(bytes).map_err(|_| refused(field, "is not valid UTF-8"))?;
    check(field, text)?;
    Ok(text)
}

fn refused(field: &str, why: &str) -> AppError {
    AppError::BadRequest(format!(
        "{field} {why}: text must be UTF-8 without control characters"
    ))
}

/// Every string (and object key) of a JSON document, except secrets. serde_json has
/// already refused invalid UTF-8 and lone surrogates (`\ud800`) as malformed JSON.
pub fn check_json(value: &Value) -> Result<(), AppError> {
    walk(value, "body")
}

fn walk(value: &Value, at: &str) -> Result<(), AppError> {
    match value {
        Value::String(s) => check(at, s),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, item)| walk(item, &format!("{at}[{i}]"))),
        Value::Object(fields) => fields.iter().try_for_each(|(key, item)| {
            let at = format!("{at}.{key}");
            check(&at, key)?;
            if SECRET_FIELDS.contains(&key.as_str()) {
                return Ok(());
            }
            walk(item, &at)
        }),
        Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
    }
}

/// Every name and value of a query string, percent-decoded (`+` is a space) as
/// `application/x-www-form-urlencoded` does, before any lossy decoding can hide a
/// bad byte.
pub fn check_query(query: &str) -> Result<(), AppError> {
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| percent_decode(s.replace('+', " ").as_bytes()).collect::<Vec<u8>>();
        let name = decode(name);
        let name = from_bytes("a query parameter name", &name)?;
        from_bytes(&format!("query parameter {name:?}"), &decode(value))?;
    }
    Ok(())
}

/// The edge layer: the query string, every path segment and `X-Request-Id` (recorded
/// in every event's metadata) under the rule, for every route, before anything (an
/// idempotency claim, a handler) can record the request.
pub async fn guard(request: Request, next: Next) -> Response {
    let checked = check_uri(request.uri()).and_then(|()| {
        request
            .headers()
            .get(crate::api::edge::observe::REQUEST_ID)
            .map_or(Ok(""), |id| from_bytes("X-Request-Id", id.as_bytes()))
            .map(drop)
    });
    match checked {
        Ok(()) => next.run(request).await,
        Err(refusal) => refusal.into_response(),
    }
}

fn check_uri(uri: &Uri) -> Result<(), AppError> {
    for segment in uri.path().split('/') {
        let decoded: Vec<u8> = percent_decode(segment.as_bytes()).collect();
        from_bytes("a path segment", &decoded)?;
    }
    check_query(uri.query().unwrap_or_default())
}

/// The `User-Agent` to record: clients rarely choose it, so a strange one must not lock
/// anyone out. It is recorded sanitized instead of refused: bytes that are not UTF-8
/// and control characters become U+FFFD, at most 512 characters; absent is empty.
pub fn user_agent(headers: &HeaderMap) -> String {
    let raw = headers.get(USER_AGENT).map(|v| v.as_bytes()).unwrap_or(b"");
    String::from_utf8_lossy(raw)
        .chars()
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .take(MAX_USER_AGENT)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn control_characters_and_bad_utf8_are_refused() {
        assert!(check("name", "plain é 名前 🙂").is_ok());
        for bad in ["\0nul.txt", "a\tb", "line\n", "del\u{7f}", "c1\u{85}"] {
            assert!(check("name", bad).is_err(), "{bad:?}");
        }
        assert!(from_bytes("name", b"ok").is_ok());
        assert!(from_bytes("name", b"\xff\xfe").is_err());
    }

    #[test]
    fn json_is_walked_but_secrets_are_not() {
        let ok = serde_json::json!({"email": "a@b.c", "password": "x\u{0}y", "tags": ["t"]});
        assert!(check_json(&ok).is_ok());
        let bad = serde_json::json!({"tags": ["ok", "n\u{0}"]});
        let AppError::BadRequest(message) = check_json(&bad).unwrap_err() else {
            panic!("not a bad request");
        };
        assert!(message.starts_with("body.tags[1] "), "{message}");
        assert!(check_json(&serde_json::json!({"k\u{1}": 1})).is_err());
    }

    #[test]
    fn query_strings_are_checked_after_decoding() {
        assert!(check_query("name=a+b%20c&tag=%C3%A9&limit=5&flag").is_ok());
        for bad in ["name=%00", "tag=a%0Ab", "actor=%FF", "%00=1", "x=%E2%82"] {
            assert!(check_query(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn user_agents_are_sanitized_not_refused() {
        let mut headers = HeaderMap::new();
        assert_eq!(user_agent(&headers), "");
        headers.insert(
            USER_AGENT,
            HeaderValue::from_bytes(b"curl/8\tx\xff").unwrap(),
        );
        assert_eq!(user_agent(&headers), "curl/8\u{FFFD}x\u{FFFD}");
        headers.insert(USER_AGENT, HeaderValue::from_str(&"a".repeat(600)).unwrap());
        assert_eq!(user_agent(&headers).len(), MAX_USER_AGENT);
    }
}
