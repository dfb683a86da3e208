//! `chronicle bench scan`: the builtin scanner alone, in-process, over random bytes held
//! in memory, beside its limit in the same run (the `sha2` crate hashing the same bytes
//! on one thread: a single pass over memory that any scanner must at least match); and a
//! deflate bomb, to show the speed did not cost the archive limits.

use std::io::Write;
use std::time::Instant;

use super::store::Row;
use crate::scan::{ArchiveLimits, BuiltinScanner, SignatureDb, Verdict};

/// Bytes handed to the scanner at a time, as the worker does.
const PIECE: usize = 1024 * 1024;
const MB: f64 = 1_000_000.0;

/// Random bytes, scanned `runs` times (the best run counts: the figure is the scanner's
/// speed, not the machine's neighbours').
pub fn run(mib: usize, runs: usize) -> anyhow::Result<Vec<Row>> {
    let (db, _) = SignatureDb::load(None)?;
    let signatures = db.len();
    let scanner = BuiltinScanner::new(db, ArchiveLimits::default());
    let bytes = random_bytes(mib * 1024 * 1024);

    let limit = best_of(runs, || {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        for piece in bytes.chunks(PIECE) {
            h.update(piece);
        }
        std::hint::black_box(h.finalize());
    });
    let mut verdict = Verdict::Clean;
    let scan = best_of(runs, || verdict = scanner.scan_slice(&bytes, PIECE));
    anyhow::ensure!(
        verdict == Verdict::Clean,
        "random bytes were reported {verdict:?}"
    );
    let limit_mbs = bytes.len() as f64 / MB / limit;
    let scan_mbs = bytes.len() as f64 / MB / scan;

    let (bomb, inflated) = deflate_bomb()?;
    let started = Instant::now();
    let bomb_verdict = scanner.scan_slice(&bomb, PIECE);
    let bomb_secs = started.elapsed().as_secs_f64();
    let Verdict::Infected { signature } = bomb_verdict else {
        anyhow::bail!("the deflate bomb was reported clean");
    };

    Ok(vec![
        Row {
            name: "builtin scanner, random bytes in memory",
            value: scan_mbs,
            unit: "MB/s",
            note: format!(
                "{mib} MiB in 1 MiB pieces, best of {runs}; {signatures} signatures; {:.0} % of the SHA-256 limit; target ≥ 1000 MB/s",
                100.0 * scan_mbs / limit_mbs
            ),
        },
        Row {
            name: "limit: SHA-256 (sha2, one thread) of the same bytes",
            value: limit_mbs,
            unit: "MB/s",
            note: format!("best of {runs}"),
        },
        Row {
            name: "builtin scanner, deflate bomb",
            value: bomb_secs,
            unit: "s",
            note: format!(
                "{:.1} MiB zip inflating to {:.0} MiB: {signature}",
                bomb.len() as f64 / 1024.0 / 1024.0,
                inflated as f64 / 1024.0 / 1024.0
            ),
        },
    ])
}

fn best_of(runs: usize, mut f: impl FnMut()) -> f64 {
    (0..runs.max(1))
        .map(|_| {
            let started = Instant::now();
            f();
            started.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// xorshift64: incompressible, deterministic, generated faster than it is scanned.
fn random_bytes(len: usize) -> Vec<u8> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// One deflated zip member of zeros past the default archive limit (1 GiB extracted):
/// the scanner must stop at the limit with `Heuristics.Limits.Exceeded.MaxScanSize`.
fn deflate_bomb() -> anyhow::Result<(Vec<u8>, u64)> {
    let inflated = ArchiveLimits::default().max_archive_bytes + 64 * 1024 * 1024;
    let zeros = vec![0u8; PIECE];
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    for _ in 0..inflated / PIECE as u64 {
        encoder.write_all(&zeros)?;
    }
    let data = encoder.finish()?;
    let name = b"zeros.bin";
    let mut zip = Vec::with_capacity(30 + name.len() + data.len());
    zip.extend_from_slice(b"PK\x03\x04");
    zip.extend_from_slice(&20u16.to_le_bytes()); // version needed
    zip.extend_from_slice(&0u16.to_le_bytes()); // flags
    zip.extend_from_slice(&8u16.to_le_bytes()); // deflate
    zip.extend_from_slice(&[0; 4]); // time, date
    zip.extend_from_slice(&[0; 4]); // crc (not checked by a scan)
    zip.extend_from_slice(&(data.len() as u32).to_le_bytes());
    zip.extend_from_slice(&u32::MAX.to_le_bytes()); // uncompressed: > 4 GiB is allowed
    zip.extend_from_slice(&(name.len() as u16).to_le_bytes());
    zip.extend_from_slice(&0u16.to_le_bytes());
    zip.extend_from_slice(name);
    zip.extend_from_slice(&data);
    Ok((zip, inflated))
}
