//! The builtin scanner's signature matching over a stream that arrives in pieces of fuzzed
//! sizes. Input: `[n][n piece sizes][payload]`.
//! Checks: no panic; the verdict does not depend on how the stream is cut; a payload that
//! holds the marker is infected.
#![no_main]

use std::sync::OnceLock;

use chronicle::scan::{ArchiveLimits, BuiltinScanner};
use chronicle_fuzz::{MARKER, assert_same_verdict, infected, scanner};
use libfuzzer_sys::fuzz_target;

fn the_scanner() -> &'static BuiltinScanner {
    static SCANNER: OnceLock<BuiltinScanner> = OnceLock::new();
    SCANNER.get_or_init(|| {
        scanner(ArchiveLimits {
            max_archive_bytes: 1 << 20,
            max_expansion: 10,
            max_members: 1000,
            max_depth: 4,
        })
    })
}

fuzz_target!(|data: &[u8]| {
    let [n, rest @ ..] = data else {
        return;
    };
    let n = usize::from(n % 8) + 1;
    if rest.len() < n {
        return;
    }
    let (sizes, payload) = rest.split_at(n);
    // Zero-sized pieces are allowed (a read may return nothing), as long as some advance.
    let step = |i: usize| usize::from(sizes[i % n]);
    let all_zero = sizes.iter().all(|&s| s == 0);
    let mut pieces = Vec::new();
    let (mut at, mut i) = (0, 0);
    while at < payload.len() {
        let size = if all_zero { 1 } else { step(i) };
        let end = (at + size).min(payload.len());
        pieces.push(&payload[at..end]);
        at = end;
        i += 1;
    }
    let scanner = the_scanner();
    let chunked = scanner.scan_pieces(pieces);
    let whole = scanner.scan_slice(payload, payload.len().max(1));
    assert_same_verdict(&chunked, &whole);
    if payload.windows(MARKER.len()).any(|w| w == MARKER) {
        assert!(infected(&whole), "marker missed: {whole:?}");
    }
});
