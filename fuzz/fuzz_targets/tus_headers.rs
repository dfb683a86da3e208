//! tus request headers (Upload-Metadata, Upload-Checksum, Upload-Offset/Length,
//! Content-Type, Tus-Resumable): the fuzzed bytes are the value of each.
//! Checks: no panic; a refusal is 400 (412 for Tus-Resumable); what is accepted has the
//! shape the handlers rely on.
#![no_main]

use chronicle::api::fuzzing::{self, Algorithm};
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // What hyper would hand over: header values never hold CR, LF or NUL.
    let Ok(value) = HeaderValue::from_bytes(data) else {
        return;
    };
    let mut h = HeaderMap::new();
    for name in [
        "upload-metadata",
        "upload-checksum",
        "upload-offset",
        "upload-length",
        "content-length",
        "content-type",
        "tus-resumable",
    ] {
        h.insert(name, value.clone());
    }

    match fuzzing::metadata(&h) {
        Ok(m) => {
            if let Some(t) = &m.filetype {
                assert!(
                    t.contains('/') && !t.bytes().any(|b| b.is_ascii_uppercase()),
                    "{t:?}"
                );
            }
        }
        Err(err) => assert_eq!(err.status().as_u16(), 400, "{err}"),
    }

    match fuzzing::checksum(&h) {
        Ok(Some(c)) => {
            let len = match c.algorithm {
                Algorithm::Sha1 => 20,
                Algorithm::Sha256 => 32,
            };
            assert_eq!(c.digest.len(), len);
        }
        Ok(None) => panic!("the header is present"),
        Err(err) => assert_eq!(err.status().as_u16(), 400, "{err}"),
    }

    for name in ["upload-offset", "upload-length", "content-length"] {
        match fuzzing::number(&h, name) {
            Ok(Some(n)) => {
                let text = std::str::from_utf8(data).unwrap();
                let digits = text.trim_start_matches('0');
                assert_eq!(if digits.is_empty() { "0" } else { digits }, n.to_string());
            }
            Ok(None) => panic!("the header is present"),
            Err(err) => assert_eq!(err.status().as_u16(), 400, "{err}"),
        }
    }

    let _ = fuzzing::is_chunk(&h);

    match fuzzing::require_tus_resumable(&h) {
        Ok(()) => assert_eq!(data, b"1.0.0"),
        Err(err) => assert_eq!(err.status().as_u16(), 412, "{err}"),
    }
});
