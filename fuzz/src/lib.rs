//! Shared by the scanner targets: a signature database with patterns a fuzzer can hit
//! (short, wildcards, a fixed offset, a hash) besides the project's own, and the limits
//! they scan under.

use chronicle::scan::{ArchiveLimits, BuiltinScanner, SignatureDb, Verdict};

/// Any stream holding this is infected (`Fuzz.Marker`).
pub const MARKER: &[u8] = b"FZZMARK";

const FUZZ_NDB: &str = "\
Fuzz.Marker:0:*:465a5a4d41524b
Fuzz.Wildcards:0:*:4142??44{3}45?6
Fuzz.AtOffset:0:5:5858
";
/// SHA-1 of `abc`.
const FUZZ_HSB: &str = "a9993e364706816aba3e25717850c26c9cd0d89d:3:Fuzz.Sha1.abc\n";

pub fn scanner(limits: ArchiveLimits) -> BuiltinScanner {
    let db = SignatureDb::from_files(&[
        (
            "chronicle.hdb",
            include_str!("../../signatures/chronicle.hdb"),
        ),
        (
            "chronicle.hsb",
            include_str!("../../signatures/chronicle.hsb"),
        ),
        (
            "chronicle.ndb",
            include_str!("../../signatures/chronicle.ndb"),
        ),
        ("fuzz.ndb", FUZZ_NDB),
        ("fuzz.hsb", FUZZ_HSB),
    ])
    .expect("the fuzz signatures parse");
    BuiltinScanner::new(db, limits)
}

pub fn infected(v: &Verdict) -> bool {
    matches!(v, Verdict::Infected { .. })
}

/// The byte-limit heuristic: it may fire earlier when the input arrives in small pieces
/// (the allowance grows with the input read so far), so only it may tell chunked and
/// whole scans apart.
pub fn is_size_limit(v: &Verdict) -> bool {
    matches!(v, Verdict::Infected { signature } if signature == "Heuristics.Limits.Exceeded.MaxScanSize")
}

/// A chunked scan agrees with the whole-buffer scan on "infected or not".
pub fn assert_same_verdict(chunked: &Verdict, whole: &Verdict) {
    if infected(chunked) != infected(whole) {
        assert!(
            is_size_limit(chunked) && !infected(whole),
            "chunked scan says {chunked:?}, whole-buffer scan says {whole:?}"
        );
    }
}
