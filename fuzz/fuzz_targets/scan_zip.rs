//! The builtin scanner's zip inspection and its bomb limits, on zips built from the fuzzed
//! description (so the fuzzer reaches members, nesting and compression, not only header
//! parsing). Input: records `[ctrl][len][len bytes]`; ctrl bits: 0 deflate, 1 sizes in a
//! data descriptor, 2 append the marker, 3 the bytes describe a nested zip, 4 repeat the
//! content 256 times (bomb material), 5 encrypted flag. Any bytes left over (a record cut
//! short) are prepended raw, like a self-extractor's stub.
//!
//! Checks: no panic; the verdict does not depend on how the stream is cut; the marker in
//! any member the scanner can read (or whose raw bytes it sees) is found; more members,
//! nesting or extracted bytes than the limits allow is flagged.
#![no_main]

use std::io::Write;
use std::sync::OnceLock;

use chronicle::scan::{ArchiveLimits, BuiltinScanner};
use chronicle_fuzz::{MARKER, assert_same_verdict, infected, scanner};
use libfuzzer_sys::fuzz_target;

const LIMITS: ArchiveLimits = ArchiveLimits {
    max_archive_bytes: 64 * 1024,
    max_expansion: 10,
    max_members: 32,
    max_depth: 3,
};
const REPEAT: usize = 256;
/// Plaintext bytes one input may build: compressing is the harness's own cost, and an
/// instrumented deflate of megabytes would time out before the scanner is reached.
const BUILD_BUDGET: usize = 512 * 1024;
const LOCAL_HEADER_SIG: &[u8] = b"PK\x03\x04";

fn the_scanner() -> &'static BuiltinScanner {
    static SCANNER: OnceLock<BuiltinScanner> = OnceLock::new();
    SCANNER.get_or_init(|| scanner(LIMITS))
}

/// What the scan must at least see, counted in streams it certainly reads.
#[derive(Default)]
struct Expect {
    marker: bool,
    members: u64,
    extracted: u64,
    too_deep: bool,
    /// Fuzzed raw bytes hold a local header signature: a fake header may swallow real
    /// ones (the scanner never reads the central directory), so only "no panic" holds.
    raw_headers: bool,
}

impl Expect {
    fn add(&mut self, other: &Expect, times: u64) {
        self.marker |= other.marker;
        self.members = self
            .members
            .saturating_add(other.members.saturating_mul(times));
        self.extracted = self
            .extracted
            .saturating_add(other.extracted.saturating_mul(times));
        self.too_deep |= other.too_deep;
        self.raw_headers |= other.raw_headers;
    }
}

fn deflate(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn has_header_sig(bytes: &[u8]) -> bool {
    bytes.windows(4).any(|w| w == LOCAL_HEADER_SIG)
}

/// Builds the zip whose members sit at `depth`; `certain`: the scanner reads this stream.
fn build(
    mut data: &[u8],
    depth: u32,
    certain: bool,
    expect: &mut Expect,
    budget: &mut usize,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    let mut count = 0u16;
    while let [ctrl, len, rest @ ..] = data {
        let len = usize::from(*len);
        if rest.len() < len {
            break;
        }
        let (bytes, tail) = rest.split_at(len);
        data = tail;
        let deflated = ctrl & 1 != 0;
        let descriptor = ctrl & 2 != 0;
        let encrypted = ctrl & 32 != 0;
        let readable = !encrypted && (deflated || !descriptor);
        let mut inner = Expect::default();
        let mut content = if ctrl & 8 != 0 {
            build(bytes, depth + 1, certain && readable, &mut inner, budget)
        } else {
            inner.raw_headers = has_header_sig(bytes);
            bytes.to_vec()
        };
        if ctrl & 4 != 0 {
            content.extend_from_slice(MARKER);
            // Seen inside the member, or raw in this stream when stored.
            inner.marker = certain && (readable || !deflated);
        }
        let times = if ctrl & 16 != 0 && content.len() * REPEAT <= *budget {
            REPEAT
        } else {
            1
        };
        *budget = budget.saturating_sub(content.len() * times);
        content = content.repeat(times);
        if certain {
            expect.members += 1;
            if readable {
                expect.extracted = expect.extracted.saturating_add(content.len() as u64);
                expect.too_deep |= depth > LIMITS.max_depth;
            }
        }
        expect.add(&inner, times as u64);

        let mut crc = flate2::Crc::new();
        crc.update(&content);
        let crc = crc.sum();
        let (method, stored) = if deflated {
            (8u16, deflate(&content))
        } else {
            (0u16, content.clone())
        };
        if certain && !readable && deflated {
            // The scanner looks for headers through these bytes; compressed data can hold
            // a header signature literally (stored deflate blocks).
            expect.raw_headers |= has_header_sig(&stored);
        }
        let flags = u16::from(descriptor) << 3 | u16::from(encrypted);
        let (h_crc, h_csize, h_usize) = if descriptor {
            (0, 0, 0)
        } else {
            (crc, stored.len() as u32, content.len() as u32)
        };
        let name = format!("m{count}");
        let offset = out.len() as u32;
        out.extend_from_slice(LOCAL_HEADER_SIG);
        out.extend_from_slice(&20u16.to_le_bytes());
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&method.to_le_bytes());
        out.extend_from_slice(&[0; 4]); // time, date
        out.extend_from_slice(&h_crc.to_le_bytes());
        out.extend_from_slice(&h_csize.to_le_bytes());
        out.extend_from_slice(&h_usize.to_le_bytes());
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&stored);
        if descriptor {
            out.extend_from_slice(b"PK\x07\x08");
            out.extend_from_slice(&crc.to_le_bytes());
            out.extend_from_slice(&(stored.len() as u32).to_le_bytes());
            out.extend_from_slice(&(content.len() as u32).to_le_bytes());
        }
        central.extend_from_slice(b"PK\x01\x02");
        central.extend_from_slice(&20u16.to_le_bytes());
        central.extend_from_slice(&20u16.to_le_bytes());
        central.extend_from_slice(&flags.to_le_bytes());
        central.extend_from_slice(&method.to_le_bytes());
        central.extend_from_slice(&[0; 4]);
        central.extend_from_slice(&crc.to_le_bytes());
        central.extend_from_slice(&(stored.len() as u32).to_le_bytes());
        central.extend_from_slice(&(content.len() as u32).to_le_bytes());
        central.extend_from_slice(&(name.len() as u16).to_le_bytes());
        central.extend_from_slice(&[0; 12]); // extra, comment, disk, attributes
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
        count = count.wrapping_add(1);
    }
    // A record cut short: raw bytes in front, as a self-extracting stub.
    if !data.is_empty() {
        expect.raw_headers |= has_header_sig(data);
        let mut stub = data.to_vec();
        stub.append(&mut out);
        out = stub;
    }
    let cd_offset = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(b"PK\x05\x06");
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

fuzz_target!(|data: &[u8]| {
    let mut expect = Expect::default();
    let mut budget = BUILD_BUDGET;
    let zip = build(data, 1, true, &mut expect, &mut budget);
    let scanner = the_scanner();
    let whole = scanner.scan_slice(&zip, zip.len().max(1));
    let piece = [1, 3, 17, 512, 4096][data.len() % 5];
    let chunked = scanner.scan_slice(&zip, piece);
    assert_same_verdict(&chunked, &whole);
    if expect.raw_headers {
        return;
    }
    let allowed = LIMITS
        .max_archive_bytes
        .max(LIMITS.max_expansion * zip.len() as u64);
    let must = [
        ("the marker", expect.marker),
        ("too many members", expect.members > LIMITS.max_members),
        ("too deep", expect.too_deep),
        ("too many bytes", expect.extracted > allowed),
    ];
    for (why, applies) in must {
        assert!(!applies || infected(&whole), "{why} not flagged: {whole:?}");
    }
});
