//! JSON text that Postgres can store. The log's `payload` and `metadata` columns are
//! `json`, which keeps any escape; but `jsonb` refuses `\u0000` ("unsupported Unicode
//! escape sequence") and unpaired surrogates, and `text` refuses the NUL character. An
//! event holding one of them (written before the edge refused control characters, or by
//! a future bug) would otherwise fail in every projector that copies the string into a
//! read table, forever.
//!
//! So every event is read through [`storable_json`]: each such escape becomes `\ufffd`
//! (U+FFFD REPLACEMENT CHARACTER, the Unicode "could not be represented" sign). A pure
//! function of the stored text, so live projection and rebuilds write the same rows;
//! everything else — key order, other escapes, whitespace — is kept byte for byte, and the
//! stored event (what the hash chain covers) is never touched.

use std::borrow::Cow;

/// The escape that replaces what Postgres cannot store.
const REPLACEMENT: &str = "\\ufffd";

/// `json` with `\u0000` and unpaired surrogate escapes replaced by `\ufffd`; borrowed
/// (no copy) when there are none, which is every event the current edge accepts.
///
/// Works on the text, not a parse: outside strings valid JSON has no backslash, so every
/// backslash starts an escape, and a `\\` escape is skipped whole (`\\u0000` is the
/// six characters `\u0000`, not a NUL). Malformed escapes are left for the decoder to
/// refuse.
pub fn storable_json(json: &str) -> Cow<'_, str> {
    let bytes = json.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            i += 1;
            continue;
        }
        if bytes.get(i + 1) != Some(&b'u') {
            i += 2;
            continue;
        }
        let Some(unit) = hex4(bytes, i + 2) else {
            i += 2;
            continue;
        };
        let storable = match unit {
            0 => false,
            0xD800..=0xDBFF => {
                let low = bytes.get(i + 6..i + 8) == Some(b"\\u".as_slice())
                    && matches!(hex4(bytes, i + 8), Some(0xDC00..=0xDFFF));
                if low {
                    i += 12;
                    continue;
                }
                false
            }
            0xDC00..=0xDFFF => false,
            _ => true,
        };
        if !storable {
            // `i` and `copied` sit on ASCII bytes (a backslash, or just past an escape),
            // so both are char boundaries.
            let o = out.get_or_insert_with(|| String::with_capacity(json.len()));
            o.push_str(&json[copied..i]);
            o.push_str(REPLACEMENT);
            copied = i + 6;
        }
        i += 6;
    }
    match out {
        None => Cow::Borrowed(json),
        Some(mut o) => {
            o.push_str(&json[copied..]);
            Cow::Owned(o)
        }
    }
}

/// The four hex digits at `at` as a UTF-16 code unit.
fn hex4(bytes: &[u8], at: usize) -> Option<u32> {
    let digits = std::str::from_utf8(bytes.get(at..at + 4)?).ok()?;
    if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(digits, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_json_is_borrowed_unchanged() {
        let text = r#"{"a":"b\n\u001f\u00e9\"","c":[1,2],"d":"\ud83d\ude00"}"#;
        assert!(matches!(storable_json(text), Cow::Borrowed(t) if t == text));
    }

    #[test]
    fn nul_and_unpaired_surrogates_become_the_replacement_character() {
        let text = r#"{"filename":"\u0000nul.txt","x":"\ud800","y":"\uDC00z","z":"a\u0000"}"#;
        let out = storable_json(text);
        assert_eq!(
            out,
            r#"{"filename":"\ufffdnul.txt","x":"\ufffd","y":"\ufffdz","z":"a\ufffd"}"#
        );
        let value: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(value["filename"], "\u{fffd}nul.txt");
    }

    #[test]
    fn an_escaped_backslash_is_not_an_escape() {
        let text = r#"{"path":"C:\\u0000"}"#;
        assert_eq!(storable_json(text), text);
        let nul_after = r#"{"p":"\\\u0000"}"#;
        assert_eq!(storable_json(nul_after), r#"{"p":"\\\ufffd"}"#);
    }

    #[test]
    fn deterministic_and_idempotent() {
        let text = "{\"k\\u0000\":\"\\u0000\\u0000é\"}";
        let once = storable_json(text).into_owned();
        assert_eq!(storable_json(text), once);
        assert_eq!(storable_json(&once), once);
        assert_eq!(once, "{\"k\\ufffd\":\"\\ufffd\\ufffdé\"}");
    }

    #[test]
    fn serde_output_of_a_nul_is_caught() {
        let text = serde_json::to_string(&serde_json::json!({"n": "\0"})).unwrap();
        assert_eq!(storable_json(&text), r#"{"n":"\ufffd"}"#);
    }
}
