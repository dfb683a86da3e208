//! Listing cursors (`GET /v1/files?cursor=`, `GET /v1/audit?cursor=`): signed text from
//! the client. Input: `[mode][text]`.
//! Checks: no panic; forged text is refused with 400; correctly signed text of any shape
//! (mode 1) never panics the parsing behind the signature; what decodes re-encodes to a
//! cursor that decodes to the same position (mode 2: arbitrary positions round-trip).
#![no_main]

use chronicle::api::fuzzing as f;
use chrono::DateTime;
use libfuzzer_sys::fuzz_target;
use uuid::Uuid;

const SECRET: &str = "fuzzing secret";
const TENANT: Uuid = Uuid::from_u128(7);

fn check_decoded(cursor: &str) {
    match f::files_cursor_decode(SECRET, TENANT, cursor) {
        Ok((at, id)) => {
            let again = f::files_cursor_encode(SECRET, TENANT, at, id);
            assert_eq!(
                f::files_cursor_decode(SECRET, TENANT, &again).unwrap(),
                (at, id)
            );
        }
        Err(err) => assert_eq!(err.status().as_u16(), 400, "{err}"),
    }
    match f::audit_cursor_decode(SECRET, TENANT, cursor) {
        Ok((at, id)) => {
            let again = f::audit_cursor_encode(SECRET, TENANT, at, id);
            assert_eq!(
                f::audit_cursor_decode(SECRET, TENANT, &again).unwrap(),
                (at, id)
            );
        }
        Err(err) => assert_eq!(err.status().as_u16(), 400, "{err}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let [mode, rest @ ..] = data else {
        return;
    };
    match mode % 3 {
        // Attacker text as the cursor itself.
        0 => {
            let text = String::from_utf8_lossy(rest);
            check_decoded(&text);
        }
        // Any payload, correctly signed: the parsing behind the signature check.
        1 => {
            let text = String::from_utf8_lossy(rest);
            check_decoded(&f::cursor_seal(SECRET, TENANT, &text));
            // Signed for another tenant: always refused.
            let other = f::cursor_seal(SECRET, Uuid::from_u128(8), &text);
            assert!(f::files_cursor_decode(SECRET, TENANT, &other).is_err());
            assert!(f::audit_cursor_decode(SECRET, TENANT, &other).is_err());
        }
        // Positions round-trip.
        _ => {
            let Some((micros, rest)) = rest.split_first_chunk::<8>() else {
                return;
            };
            let Some((id, _)) = rest.split_first_chunk::<16>() else {
                return;
            };
            let Some(at) = DateTime::from_timestamp_micros(i64::from_le_bytes(*micros)) else {
                return;
            };
            let id = Uuid::from_bytes(*id);
            let cursor = f::files_cursor_encode(SECRET, TENANT, at, id);
            assert_eq!(
                f::files_cursor_decode(SECRET, TENANT, &cursor).unwrap(),
                (at, id)
            );
            let n = i64::from_le_bytes(id.as_bytes()[..8].try_into().unwrap());
            let cursor = f::audit_cursor_encode(SECRET, TENANT, at, n);
            assert_eq!(
                f::audit_cursor_decode(SECRET, TENANT, &cursor).unwrap(),
                (at, n)
            );
            // A files cursor is never an audit cursor.
            let files = f::files_cursor_encode(SECRET, TENANT, at, id);
            assert!(f::audit_cursor_decode(SECRET, TENANT, &files).is_err());
        }
    }
});
