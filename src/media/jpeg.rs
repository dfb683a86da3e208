//! Byte-level metadata removal for JPEG: segments are copied or dropped whole, the
//! entropy-coded scans are copied verbatim, so the decoded pixels cannot change.
//!
//! Kept: APP0 (JFIF/JFXX), APP2 `ICC_PROFILE` (colours), APP14 `Adobe` (colour transform)
//! and every non-APP segment. Dropped: APP1 (EXIF incl. GPS, XMP, extended XMP), the other
//! APP2 kinds (MPF, FlashPix), APP3–APP13 and APP15 (vendor and Photoshop/IPTC blocks, which
//! may carry names and places), COM, and anything after EOI (MPF secondary images and
//! vendor trailers, which carry their own EXIF). The orientation survives as a minimal EXIF
//! block (see `exif.rs`).

use image::metadata::Orientation;

use super::MediaError;
use super::Stripped;
use super::exif::{self, EXIF_PREFIX};

const SOI: u8 = 0xD8;
const EOI: u8 = 0xD9;
const SOS: u8 = 0xDA;
const APP0: u8 = 0xE0;
const APP1: u8 = 0xE1;
const APP2: u8 = 0xE2;
const APP14: u8 = 0xEE;

pub(super) fn strip(input: &[u8]) -> Result<Stripped, MediaError> {
    if !input.starts_with(&[0xFF, SOI]) {
        return Err(MediaError::NotAnImage);
    }
    let mut out = Vec::with_capacity(input.len());
    out.extend_from_slice(&input[..2]);
    let mut orientation = None;
    // Where the first EXIF block stood: the minimal replacement goes back there.
    let mut exif_at = None;
    let mut pos = 2;
    loop {
        let marker_start = pos;
        if input.get(pos) != Some(&0xFF) {
            return Err(corrupt("expected a marker"));
        }
        // Any number of 0xFF fill bytes may precede the marker code.
        while input.get(pos) == Some(&0xFF) {
            pos += 1;
        }
        let Some(&marker) = input.get(pos) else {
            return Err(corrupt("truncated before end-of-image"));
        };
        pos += 1;
        match marker {
            EOI => {
                out.extend_from_slice(&[0xFF, EOI]);
                break;
            }
            SOI | 0x00 => return Err(corrupt("unexpected marker")),
            // Markers without a length field.
            0x01 | 0xD0..=0xD7 => {
                out.extend_from_slice(&input[marker_start..pos]);
                continue;
            }
            _ => {}
        }
        let length = match input.get(pos..pos + 2) {
            Some(bytes) => usize::from(u16::from_be_bytes([bytes[0], bytes[1]])),
            None => return Err(corrupt("truncated segment length")),
        };
        if length < 2 {
            return Err(corrupt("segment length below 2"));
        }
        let end = pos + length;
        let Some(payload) = input.get(pos + 2..end) else {
            return Err(corrupt("segment runs past the end"));
        };
        if marker == APP1 && payload.starts_with(EXIF_PREFIX) && orientation.is_none() {
            orientation = Some(exif::orientation_of(payload));
            exif_at = Some(out.len());
        }
        if keep(marker, payload) {
            out.extend_from_slice(&input[marker_start..end]);
        }
        pos = end;
        if marker == SOS {
            let scan_end = entropy_coded_end(input, pos)?;
            out.extend_from_slice(&input[pos..scan_end]);
            pos = scan_end;
        }
    }
    let orientation = orientation.unwrap_or(Orientation::NoTransforms);
    if let (Some(at), Some(tiff)) = (exif_at, exif::minimal_tiff(orientation)) {
        let mut segment = vec![0xFF, APP1];
        // 2 (length field) + 6 (prefix) + a 26-byte TIFF: far below u16::MAX.
        let length = (2 + EXIF_PREFIX.len() + tiff.len()) as u16;
        segment.extend_from_slice(&length.to_be_bytes());
        segment.extend_from_slice(EXIF_PREFIX);
        segment.extend_from_slice(&tiff);
        out.splice(at..at, segment);
    }
    Ok(Stripped {
        bytes: out,
        orientation,
    })
}

/// Whether a segment survives stripping (an allow-list for APPn: unknown metadata goes).
fn keep(marker: u8, payload: &[u8]) -> bool {
    match marker {
        APP0 => true,
        APP2 => payload.starts_with(b"ICC_PROFILE\0"),
        APP14 => payload.starts_with(b"Adobe"),
        0xE1..=0xEF | 0xFE => false,
        _ => true,
    }
}

/// The offset of the first real marker after entropy-coded data starting at `from`.
/// Inside a scan 0xFF is followed by 0x00 (a stuffed byte), a restart marker or fill.
fn entropy_coded_end(input: &[u8], from: usize) -> Result<usize, MediaError> {
    let mut pos = from;
    while pos < input.len() {
        if input[pos] != 0xFF {
            pos += 1;
            continue;
        }
        match input.get(pos + 1) {
            None => break,
            Some(0x00 | 0xD0..=0xD7) => pos += 2,
            Some(_) => return Ok(pos),
        }
    }
    Err(corrupt("truncated scan: no end-of-image marker"))
}

fn corrupt(what: &str) -> MediaError {
    MediaError::Undecodable(format!("malformed JPEG: {what}"))
}
