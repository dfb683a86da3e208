//! The builtin scanner against its spec: each signature format, matches across chunk
//! boundaries, zip members (stored, deflated, nested, data descriptors), zip-bomb limits,
//! malformed signature files, and arbitrary input never panicking.

use std::sync::Arc;

use proptest::prelude::*;

use super::test_zip::{Member, Method, zip};
use super::zip::{LIMIT_BYTES, LIMIT_DEPTH, LIMIT_MEMBERS};
use super::*;

const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
const EICAR_MD5: &str = "44d88612fea8a8f36de82e1278abb02f";
const EICAR_SHA1: &str = "3395856ce81f2b7382dee72602f798b642f14140";
const EICAR_SHA256: &str = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f";

fn shipped() -> BuiltinScanner {
    let (db, ignored) = SignatureDb::load(None).expect("compiled-in signatures parse");
    assert!(ignored.is_empty());
    BuiltinScanner::new(db, ArchiveLimits::default())
}

fn scanner(files: &[(&str, &str)]) -> BuiltinScanner {
    scanner_with(files, ArchiveLimits::default())
}

fn scanner_with(files: &[(&str, &str)], limits: ArchiveLimits) -> BuiltinScanner {
    BuiltinScanner::new(SignatureDb::from_files(files).unwrap(), limits)
}

fn infected(name: &str) -> Verdict {
    Verdict::Infected {
        signature: name.into(),
    }
}

/// Only an MD5 of the whole stream: finds EICAR in an archive only if the member was
/// extracted exactly (the raw archive bytes never hash to it).
fn md5_only() -> BuiltinScanner {
    scanner(&[("t.hdb", &format!("{EICAR_MD5}:68:Test.MD5"))])
}

fn body_only() -> BuiltinScanner {
    scanner(&[("t.ndb", &format!("Test.Body:0:*:{}", hex::encode(EICAR)))])
}

#[test]
fn shipped_signatures_catch_eicar_and_pass_ordinary_bytes() {
    let s = shipped();
    assert!(s.signature_count() >= 3);
    assert_eq!(
        s.scan_slice(EICAR, 64 * 1024),
        infected("Chronicle.Test.EICAR")
    );
    let mut with_newline = EICAR.to_vec();
    with_newline.extend_from_slice(b"\r\n");
    assert_eq!(
        s.scan_slice(&with_newline, 7),
        infected("Chronicle.Test.EICAR")
    );
    assert_eq!(s.scan_slice(b"hello, world\n", 4), Verdict::Clean);
    assert_eq!(s.scan_slice(b"", 4), Verdict::Clean);
    assert_eq!(
        s.scan_slice(&EICAR[..67], 64),
        Verdict::Clean,
        "a prefix is not EICAR"
    );
}

#[test]
fn hdb_matches_md5_and_size_of_the_whole_input() {
    let s = scanner(&[("t.hdb", &format!("{EICAR_MD5}:68:Test.MD5\n"))]);
    assert_eq!(s.scan_slice(EICAR, 5), infected("Test.MD5"));
    let mut longer = EICAR.to_vec();
    longer.push(b'\n');
    assert_eq!(
        s.scan_slice(&longer, 5),
        Verdict::Clean,
        "other bytes, other hash"
    );

    let wrong_size = scanner(&[("t.hdb", &format!("{EICAR_MD5}:69:Test.MD5"))]);
    assert_eq!(wrong_size.scan_slice(EICAR, 5), Verdict::Clean);
    let any_size = scanner(&[(
        "t.hdb",
        &format!("{}:*:Test.MD5:73", EICAR_MD5.to_uppercase()),
    )]);
    assert_eq!(any_size.scan_slice(EICAR, 5), infected("Test.MD5"));
}

/// Hashing stops once a stream is longer than every size its signatures name; a
/// signature of the longest size still matches, in any chunking, and `*` hashes it all.
#[test]
fn hashing_reaches_exactly_as_far_as_the_signatures_sizes() {
    let big: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let md5 = hex::encode(<md5::Md5 as sha2::Digest>::digest(&big));
    let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&big));
    // The big input's own size next to a small one: its hash must be kept to the end.
    let sized = scanner(&[(
        "t.hdb",
        &format!("{EICAR_MD5}:68:Test.Small\n{md5}:300000:Test.Big\n"),
    )]);
    for chunk in [1, 4096, 65_536, 299_999, 300_000] {
        assert_eq!(
            sized.scan_slice(&big, chunk),
            infected("Test.Big"),
            "{chunk}"
        );
        assert_eq!(
            sized.scan_slice(EICAR, chunk),
            infected("Test.Small"),
            "{chunk}"
        );
    }
    let any = scanner(&[("t.hsb", &format!("{sha256}:*:Test.Any"))]);
    assert_eq!(any.scan_slice(&big, 4096), infected("Test.Any"));
    // One byte more than any named size: no longer hashed, and correctly not matched.
    let mut longer = big.clone();
    longer.push(0);
    assert_eq!(sized.scan_slice(&longer, 4096), Verdict::Clean);
}

#[test]
fn hsb_matches_sha1_and_sha256() {
    let s = scanner(&[(
        "t.hsb",
        &format!("# comment\n{EICAR_SHA1}:68:Test.SHA1\n{EICAR_SHA256}:68:Test.SHA256\n"),
    )]);
    assert!(matches!(s.scan_slice(EICAR, 3), Verdict::Infected { .. }));
    let sha256 = scanner(&[("t.hsb", &format!("{EICAR_SHA256}:68:Test.SHA256"))]);
    assert_eq!(sha256.scan_slice(EICAR, 3), infected("Test.SHA256"));
    let sha1 = scanner(&[("t.hsb", &format!("{EICAR_SHA1}:*:Test.SHA1"))]);
    assert_eq!(sha1.scan_slice(EICAR, 3), infected("Test.SHA1"));
    assert_eq!(sha1.scan_slice(b"harmless", 3), Verdict::Clean);
}

#[test]
fn ndb_wildcards_gaps_and_offsets() {
    // "EVIL" ?? "CODE" with a nibble wildcard and a fixed gap.
    let s = scanner(&[(
        "t.ndb",
        "Test.Wild:0:*:4556494c??434f4445\n\
         Test.Nibble:0:*:41424?44\n\
         Test.Gap:0:*:5354{3}454e44\n\
         Test.AtFour:0:4:4d5a9000\n",
    )]);
    assert_eq!(s.scan_slice(b"xxEVIL-CODExx", 2), infected("Test.Wild"));
    assert_eq!(s.scan_slice(b"xxEVIL--CODE", 2), Verdict::Clean);
    assert_eq!(s.scan_slice(b"..AB\x4fD..", 3), infected("Test.Nibble"));
    assert_eq!(
        s.scan_slice(b"..AB\x53D..", 3),
        Verdict::Clean,
        "high nibble must match"
    );
    assert_eq!(s.scan_slice(b"ST123END", 1), infected("Test.Gap"));
    assert_eq!(s.scan_slice(b"ST12END", 1), Verdict::Clean);
    assert_eq!(s.scan_slice(b"abcdMZ\x90\x00", 3), infected("Test.AtFour"));
    assert_eq!(
        s.scan_slice(b"abcMZ\x90\x00.", 3),
        Verdict::Clean,
        "offset 3 is not 4"
    );
    assert_eq!(
        s.scan_slice(b"abcdeMZ\x90\x00", 3),
        Verdict::Clean,
        "offset 5 is not 4"
    );
}

#[test]
fn a_signature_split_across_every_chunk_boundary_is_found() {
    let s = body_only();
    let mut input = vec![b'.'; 1000];
    input.splice(500..500, EICAR.iter().copied());
    for chunk in 1..=80 {
        assert_eq!(
            s.scan_slice(&input, chunk),
            infected("Test.Body"),
            "chunk size {chunk}"
        );
    }
    let fixed = scanner(&[("t.ndb", "Test.Fixed:0:10:00112233445566")]);
    let mut at_ten = vec![0xAA; 10];
    at_ten.extend_from_slice(&[0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0xAA]);
    for chunk in 1..=20 {
        assert_eq!(
            fixed.scan_slice(&at_ten, chunk),
            infected("Test.Fixed"),
            "chunk {chunk}"
        );
    }
}

#[test]
fn zip_members_stored_and_deflated_are_extracted_and_scanned() {
    for method in [Method::Stored, Method::Deflated] {
        let archive = zip(&[
            Member::new("readme.txt", b"nothing to see here", method),
            Member::new("eicar.com", EICAR, method),
        ]);
        assert_eq!(
            md5_only().scan_slice(&archive, 1000),
            infected("Test.MD5"),
            "{method:?}"
        );
        assert_eq!(
            md5_only().scan_slice(&archive, 1),
            infected("Test.MD5"),
            "{method:?}"
        );
        assert_eq!(
            shipped().scan_slice(&archive, 4096),
            infected("Chronicle.Test.EICAR")
        );
        let clean = zip(&[Member::new("a.txt", b"fine", method)]);
        assert_eq!(shipped().scan_slice(&clean, 4096), Verdict::Clean);
    }
    // Padded so that deflate compresses (68 bytes alone go into a stored block): EICAR no
    // longer appears in the raw bytes, only inflating finds it.
    let padded = [&[b'x'; 2000][..], EICAR, &[b'y'; 2000]].concat();
    let archive = zip(&[Member::new("e.txt", &padded, Method::Deflated)]);
    assert!(memchr::memmem::find(&archive, b"EICAR").is_none());
    assert_eq!(body_only().scan_slice(&archive, 13), infected("Test.Body"));
}

#[test]
fn zip_in_zip_data_descriptors_and_junk_prefixes_are_inspected() {
    let inner = zip(&[Member::new("eicar.com", EICAR, Method::Deflated)]);
    let outer = zip(&[
        Member::new("photo.jpg", &[0xFF; 3000], Method::Deflated),
        Member::new("inner.zip", &inner, Method::Deflated),
    ]);
    assert_eq!(md5_only().scan_slice(&outer, 777), infected("Test.MD5"));

    let mut streamed = Member::new("eicar.com", EICAR, Method::Deflated);
    streamed.data_descriptor = true;
    let archive = zip(&[Member::new("a.txt", b"first", Method::Deflated), streamed]);
    assert_eq!(md5_only().scan_slice(&archive, 50), infected("Test.MD5"));

    // unzip opens a zip behind arbitrary bytes (self-extracting archives); so do we.
    let mut sfx = b"MZ\x90\x00 stub program PK".to_vec();
    sfx.extend_from_slice(&inner);
    assert_eq!(md5_only().scan_slice(&sfx, 9), infected("Test.MD5"));
}

#[test]
fn an_uninspectable_member_lying_about_its_size_hides_nothing_behind_it() {
    let mut archive = zip(&[
        Member::new("decoy.bz2", b"0123456789", Method::Stored),
        Member::new("eicar.com", EICAR, Method::Deflated),
    ]);
    archive[8..10].copy_from_slice(&12u16.to_le_bytes()); // bzip2: not inspected
    archive[18..22].copy_from_slice(&0x7fff_ffffu32.to_le_bytes()); // "2 GiB follow"
    assert_eq!(md5_only().scan_slice(&archive, 64), infected("Test.MD5"));
    archive[6] |= 1; // and encrypted as well
    assert_eq!(md5_only().scan_slice(&archive, 64), infected("Test.MD5"));
}

#[test]
fn nesting_deeper_than_the_limit_is_reported_not_passed() {
    let mut nested = EICAR.to_vec();
    for level in 0..3 {
        nested = zip(&[Member::new(
            &format!("level{level}"),
            &nested,
            Method::Deflated,
        )]);
    }
    // EICAR sits at depth 3.
    let limits = |max_depth| ArchiveLimits {
        max_depth,
        ..ArchiveLimits::default()
    };
    let md5 = format!("{EICAR_MD5}:68:Test.MD5");
    let deep_enough = scanner_with(&[("t.hdb", &md5)], limits(3));
    assert_eq!(deep_enough.scan_slice(&nested, 4096), infected("Test.MD5"));
    let too_shallow = scanner_with(&[("t.hdb", &md5)], limits(2));
    assert_eq!(too_shallow.scan_slice(&nested, 4096), infected(LIMIT_DEPTH));
}

#[test]
fn zip_bombs_hit_the_byte_and_member_limits() {
    let zeros = vec![0u8; 4 << 20];
    let bomb = zip(&[Member::new("zeros", &zeros, Method::Deflated)]);
    assert!(
        bomb.len() < 64 * 1024,
        "deflate compresses zeros about 1000:1"
    );
    let limits = ArchiveLimits {
        max_archive_bytes: 1 << 20,
        ..ArchiveLimits::default()
    };
    let small = scanner_with(&[("t.hdb", &format!("{EICAR_MD5}:68:T"))], limits);
    assert_eq!(small.scan_slice(&bomb, 64 * 1024), infected(LIMIT_BYTES));
    // Within the default limit the same archive is fine.
    assert_eq!(shipped().scan_slice(&bomb, 64 * 1024), Verdict::Clean);
    // Past the byte floor, an archive that extracts to about its own size still passes:
    // the allowance grows with the input (10x by default)…
    let photos: Vec<u8> = (0..3u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let big = zip(&[Member::new("photos.bin", &photos, Method::Stored)]);
    assert_eq!(small.scan_slice(&big, 64 * 1024), Verdict::Clean);
    // …and only as far as `max_expansion` allows.
    let strict = ArchiveLimits {
        max_archive_bytes: 1 << 20,
        max_expansion: 1,
        ..ArchiveLimits::default()
    };
    let text = vec![b'a'; 3 << 20];
    let deflated = zip(&[Member::new("text", &text, Method::Deflated)]);
    let s = scanner_with(&[("t.hdb", &format!("{EICAR_MD5}:68:T"))], strict);
    assert_eq!(s.scan_slice(&deflated, 64 * 1024), infected(LIMIT_BYTES));

    let names: Vec<String> = (0..11).map(|i| format!("f{i}")).collect();
    let many: Vec<Member<'_>> = names
        .iter()
        .map(|n| Member::new(n, b"x", Method::Stored))
        .collect();
    let limits = ArchiveLimits {
        max_members: 10,
        ..ArchiveLimits::default()
    };
    let s = scanner_with(&[("t.hdb", &format!("{EICAR_MD5}:68:T"))], limits);
    assert_eq!(s.scan_slice(&zip(&many), 100), infected(LIMIT_MEMBERS));
    assert_eq!(s.scan_slice(&zip(&many[..10]), 100), Verdict::Clean);
}

#[test]
fn malformed_signature_lines_are_refused_with_file_and_line() {
    let eicar_hex = hex::encode(EICAR);
    let cases: Vec<(&str, String, &str)> = vec![
        ("a.ndb", "X:1:*:41424344".into(), "target type"),
        ("a.ndb", "X:0:EOF-10:41424344".into(), "offset"),
        ("a.ndb", "X:0:*:4142*4344".into(), "unsupported character"),
        ("a.ndb", "X:0:*:41{1-2}4344".into(), "unsupported gap"),
        ("a.ndb", "X:0:*:(41|42)4344".into(), "unsupported character"),
        ("a.ndb", "X:0:*:414".into(), "odd number"),
        ("a.ndb", "X:0:*:41??43".into(), "consecutive exact bytes"),
        ("a.ndb", "X:0:*".into(), "field(s)"),
        ("a.ndb", format!("Bad Name:0:*:{eicar_hex}"), "whitespace"),
        ("a.ndb", format!(":0:*:{eicar_hex}"), "name is empty"),
        ("a.ndb", format!("X:0:*:{}", "41".repeat(5000)), "at most"),
        ("a.hdb", format!("{EICAR_SHA1}:68:X"), "32 hex digits"),
        ("a.hdb", format!("{EICAR_MD5}:big:X"), "size"),
        (
            "a.hdb",
            format!("{}:68:X", "zz".repeat(16)),
            "not hexadecimal",
        ),
        ("a.hsb", format!("{EICAR_MD5}:68:X"), "40 or 64"),
        (
            "a.hsb",
            format!("{EICAR_SHA256}:68:X:abc"),
            "functionality level",
        ),
        ("a.hdb", String::new(), "field(s)"),
        (
            "a.txt",
            format!("{EICAR_MD5}:68:X"),
            "unknown signature file type",
        ),
    ];
    for (file, line, expected) in cases {
        let text = format!("# first line is a comment\n{line}\n");
        let err = SignatureDb::from_files(&[(file, &text)])
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "{line:?}: {err}");
        if !file.ends_with(".txt") {
            assert!(err.starts_with(&format!("{file}:2: ")), "{line:?}: {err}");
        }
    }
}

#[test]
fn signatures_dir_adds_files_and_reports_what_it_ignored() {
    let dir = std::env::temp_dir().join(format!("chronicle-sigs-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("extra.ndb"), "Extra.Marker:0:*:6d61726b6572\n").unwrap();
    std::fs::write(dir.join("main.cvd"), "binary ClamAV database").unwrap();
    let (db, ignored) = SignatureDb::load(Some(&dir)).unwrap();
    let s = BuiltinScanner::new(db, ArchiveLimits::default());
    assert_eq!(s.scan_slice(b"a marker here", 4), infected("Extra.Marker"));
    assert_eq!(
        s.scan_slice(EICAR, 4),
        infected("Chronicle.Test.EICAR"),
        "builtin kept"
    );
    assert_eq!(ignored, vec!["main.cvd".to_string()]);

    std::fs::write(dir.join("broken.hdb"), "nothex:1:X\n").unwrap();
    let err = SignatureDb::load(Some(&dir)).unwrap_err().to_string();
    assert!(err.contains("broken.hdb:1:"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn the_async_scanner_reads_the_stream_to_a_verdict() {
    let scanner: Arc<dyn Scanner> = Arc::new(shipped());
    assert_eq!(scanner.name(), "builtin");
    let archive = zip(&[Member::new("e", EICAR, Method::Deflated)]);
    let mut input: &[u8] = &archive;
    assert_eq!(
        scanner.scan(&mut input).await.unwrap(),
        infected("Chronicle.Test.EICAR")
    );
    // Larger than one read chunk, EICAR at the very end.
    let mut big = vec![b'a'; 200_000];
    big.extend_from_slice(EICAR);
    let mut input: &[u8] = &big;
    assert!(matches!(
        scanner.scan(&mut input).await.unwrap(),
        Verdict::Infected { .. }
    ));
    let clean = vec![7u8; 200_000];
    let mut input: &[u8] = &clean;
    assert_eq!(scanner.scan(&mut input).await.unwrap(), Verdict::Clean);
    scanner.health().await.unwrap();
}

/// Arbitrary bytes, and bytes made to look like zip headers, never panic, at any chunking.
fn zipish() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..64),
            Just(b"PK\x03\x04".to_vec()),
            Just(b"PK\x03\x04\x14\x00\x00\x00\x08\x00".to_vec()),
            Just(b"PK\x03\x04\x14\x00\x08\x00\x00\x00".to_vec()),
            Just(b"\xff\xff\xff\xff".to_vec()),
        ],
        0..40,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #[test]
    fn arbitrary_input_never_panics(bytes in zipish(), chunk in 1usize..300) {
        let _ = shipped().scan_slice(&bytes, chunk);
    }

    #[test]
    fn eicar_anywhere_in_random_bytes_is_found(
        prefix in prop::collection::vec(any::<u8>(), 0..3000),
        suffix in prop::collection::vec(any::<u8>(), 0..300),
        chunk in 1usize..200,
    ) {
        let input = [prefix.as_slice(), EICAR, suffix.as_slice()].concat();
        let found = matches!(body_only().scan_slice(&input, chunk), Verdict::Infected { .. });
        prop_assert!(found, "EICAR missed at chunk size {}", chunk);
    }

    #[test]
    fn a_truncated_archive_never_panics(cut in 0usize..400, chunk in 1usize..64) {
        let archive = zip(&[
            Member::new("a", b"some text some text some text", Method::Deflated),
            Member::new("b", EICAR, Method::Stored),
        ]);
        let _ = shipped().scan_slice(&archive[..cut.min(archive.len())], chunk);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Chunks are searched in place plus a seam over each boundary: wherever the
    /// boundaries fall, a floating and a fixed-offset pattern are each found exactly
    /// when present.
    #[test]
    fn patterns_are_found_wherever_the_chunk_boundaries_fall(
        at in 0usize..3000,
        chunk in 1usize..4000,
    ) {
        let sigs = format!(
            "Test.Body:0:*:{}\nTest.Fixed:0:1500:0011223344\n",
            hex::encode(EICAR)
        );
        let s = scanner(&[("t.ndb", &sigs)]);
        let mut input = vec![b'.'; 3100];
        input.splice(at..at, EICAR.iter().copied());
        prop_assert_eq!(s.scan_slice(&input, chunk), infected("Test.Body"));
        let mut fixed = vec![b'.'; 3000];
        fixed[1500..1505].copy_from_slice(&[0x00, 0x11, 0x22, 0x33, 0x44]);
        prop_assert_eq!(s.scan_slice(&fixed, chunk), infected("Test.Fixed"));
        fixed[1504] = 0x45;
        prop_assert_eq!(s.scan_slice(&fixed, chunk), Verdict::Clean);
    }
}
