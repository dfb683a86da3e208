//! `.ndb` body signatures: `name:target:offset:hexsig` lines and their byte patterns.

use super::signatures::{check_flevels, parse_name};

/// Longest body pattern accepted. The streaming matcher keeps `len - 1` bytes of history
/// per scanned stream, so this bounds memory per archive level.
pub const MAX_PATTERN_LEN: usize = 4096;
/// Fully specified bytes a body pattern needs at least: its anchor for the fast search.
const MIN_ANCHOR_LEN: usize = 2;

/// One pattern byte: matches `b` when `b & mask == value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PatternByte {
    pub value: u8,
    pub mask: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyOffset {
    Anywhere,
    At(u64),
}

#[derive(Debug)]
pub(crate) struct BodySignature {
    pub name: String,
    pub offset: BodyOffset,
    pub pattern: Vec<PatternByte>,
    /// Where the anchor (longest fully specified run) starts inside `pattern`.
    pub anchor_at: usize,
    pub anchor_len: usize,
}

impl BodySignature {
    /// Whether `bytes` starts with this pattern.
    pub fn matches_at(&self, bytes: &[u8]) -> bool {
        bytes.len() >= self.pattern.len()
            && self
                .pattern
                .iter()
                .zip(bytes)
                .all(|(p, b)| b & p.mask == p.value)
    }
}

pub(crate) fn parse_body(line: &str) -> Result<BodySignature, String> {
    let fields: Vec<&str> = line.split(':').collect();
    if !(4..=6).contains(&fields.len()) {
        return Err(format!(
            "expected name:target:offset:hexsig, got {} field(s)",
            fields.len()
        ));
    }
    let name = parse_name(fields[0])?;
    if fields[1] != "0" {
        return Err(format!(
            "target type {:?} is not supported by the builtin scanner (only 0 = any file; use clamd)",
            fields[1]
        ));
    }
    let offset = match fields[2] {
        "*" => BodyOffset::Anywhere,
        s => BodyOffset::At(s.parse::<u64>().map_err(|_| {
            format!("offset {s:?} is not supported (only * or a decimal absolute offset)")
        })?),
    };
    check_flevels(&fields[4..])?;
    let pattern = parse_hex_pattern(fields[3])?;
    if pattern.len() > MAX_PATTERN_LEN {
        return Err(format!(
            "pattern is {} bytes long; at most {MAX_PATTERN_LEN} are supported",
            pattern.len()
        ));
    }
    let (anchor_at, anchor_len) = longest_exact_run(&pattern);
    if anchor_len < MIN_ANCHOR_LEN {
        return Err(format!(
            "pattern needs at least {MIN_ANCHOR_LEN} consecutive exact bytes"
        ));
    }
    Ok(BodySignature {
        name,
        offset,
        pattern,
        anchor_at,
        anchor_len,
    })
}

fn parse_hex_pattern(sig: &str) -> Result<Vec<PatternByte>, String> {
    let bytes = sig.as_bytes();
    let mut out = Vec::with_capacity(bytes.len() / 2);
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'{' {
            let close = sig[i..]
                .find('}')
                .ok_or_else(|| format!("unclosed '{{' at position {i}"))?;
            let inner = &sig[i + 1..i + close];
            let n: usize = inner.parse().map_err(|_| {
                format!("unsupported gap {{{inner}}} at position {i} (only {{n}} is supported)")
            })?;
            if n > MAX_PATTERN_LEN {
                return Err(format!(
                    "gap {{{n}}} is longer than {MAX_PATTERN_LEN} bytes"
                ));
            }
            out.extend(std::iter::repeat_n(PatternByte { value: 0, mask: 0 }, n));
            i += close + 1;
            continue;
        }
        if i + 1 >= bytes.len() {
            return Err(format!("odd number of hex digits at position {i}"));
        }
        let (hi, lo) = (nibble(bytes[i], i)?, nibble(bytes[i + 1], i + 1)?);
        out.push(PatternByte {
            value: (hi.unwrap_or(0) << 4) | lo.unwrap_or(0),
            mask: (if hi.is_some() { 0xF0 } else { 0 }) | (if lo.is_some() { 0x0F } else { 0 }),
        });
        i += 2;
    }
    if out.is_empty() {
        return Err("empty pattern".into());
    }
    Ok(out)
}

/// A hex digit, or `None` for the `?` wildcard.
fn nibble(c: u8, pos: usize) -> Result<Option<u8>, String> {
    match c {
        b'?' => Ok(None),
        b'0'..=b'9' => Ok(Some(c - b'0')),
        b'a'..=b'f' => Ok(Some(c - b'a' + 10)),
        b'A'..=b'F' => Ok(Some(c - b'A' + 10)),
        _ => Err(format!(
            "unsupported character {:?} at position {pos} (supported: hex, ??, a?, ?a, {{n}})",
            c as char
        )),
    }
}

/// `(start, len)` of the longest run of fully specified bytes.
fn longest_exact_run(pattern: &[PatternByte]) -> (usize, usize) {
    let (mut best, mut start) = ((0, 0), 0);
    for (i, p) in pattern.iter().enumerate() {
        if p.mask != 0xFF {
            start = i + 1;
        } else if i + 1 - start > best.1 {
            best = (start, i + 1 - start);
        }
    }
    best
}
