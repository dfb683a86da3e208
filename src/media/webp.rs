//! Byte-level metadata removal for WebP (RIFF): chunks are copied or dropped whole, so
//! the decoded pixels cannot change.
//!
//! Dropped: `EXIF` (incl. GPS) and `XMP `; the VP8X flags announcing them are cleared and
//! the RIFF size is rewritten. Every other chunk (VP8/VP8L/ALPH/ICCP/ANIM/ANMF, unknown
//! ones) is kept in order. Bytes past the RIFF size are dropped. The orientation survives
//! as a minimal `EXIF` chunk (see `exif.rs`), with its VP8X flag kept set.

use image::metadata::Orientation;

use super::MediaError;
use super::Stripped;
use super::exif;

const VP8X_EXIF_FLAG: u8 = 0x08;
const VP8X_XMP_FLAG: u8 = 0x04;

pub(super) fn strip(input: &[u8]) -> Result<Stripped, MediaError> {
    if input.len() < 12 || &input[..4] != b"RIFF" || &input[8..12] != b"WEBP" {
        return Err(MediaError::NotAnImage);
    }
    let riff_size = u32::from_le_bytes([input[4], input[5], input[6], input[7]]) as usize;
    let Some(riff) = input.get(..riff_size.saturating_add(8)) else {
        return Err(corrupt("RIFF size exceeds the file"));
    };
    if riff.len() < 12 {
        return Err(corrupt("RIFF size too small"));
    }
    let mut out = Vec::with_capacity(input.len());
    out.extend_from_slice(&input[..12]);
    let mut orientation = None;
    let mut exif_at = None;
    let mut vp8x_flags_at = None;
    let mut pos = 12;
    while pos < riff.len() {
        let Some(header) = riff.get(pos..pos + 8) else {
            return Err(corrupt("truncated chunk header"));
        };
        let kind: [u8; 4] = [header[0], header[1], header[2], header[3]];
        let size = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let data_end = (pos + 8).saturating_add(size);
        let Some(data) = riff.get(pos + 8..data_end) else {
            return Err(corrupt("chunk runs past the end"));
        };
        // Chunks are padded to even sizes; a missing pad after the last chunk is tolerated
        // (some writers omit it) and written back on output.
        let padded_end = (data_end + (size & 1)).min(riff.len());
        match &kind {
            b"EXIF" => {
                if orientation.is_none() {
                    orientation = Some(exif::orientation_of(data));
                    exif_at = Some(out.len());
                }
            }
            b"XMP " => {}
            _ => {
                if &kind == b"VP8X" {
                    if size < 10 {
                        return Err(corrupt("VP8X chunk too short"));
                    }
                    vp8x_flags_at.get_or_insert(out.len() + 8);
                }
                out.extend_from_slice(&riff[pos..padded_end]);
                if size & 1 == 1 && padded_end == data_end {
                    out.push(0);
                }
            }
        }
        pos = padded_end;
    }
    // Without VP8X a WebP cannot announce EXIF and viewers ignore it, so such a file is
    // upright as stored and keeps no EXIF.
    let orientation = match vp8x_flags_at {
        Some(_) => orientation.unwrap_or(Orientation::NoTransforms),
        None => Orientation::NoTransforms,
    };
    let minimal = exif::minimal_tiff(orientation);
    if let Some(flags_at) = vp8x_flags_at {
        out[flags_at] &= !(VP8X_EXIF_FLAG | VP8X_XMP_FLAG);
        if minimal.is_some() {
            out[flags_at] |= VP8X_EXIF_FLAG;
        }
    }
    if let (Some(at), Some(tiff)) = (exif_at, minimal) {
        let mut chunk = b"EXIF".to_vec();
        chunk.extend_from_slice(&(tiff.len() as u32).to_le_bytes());
        chunk.extend_from_slice(&tiff); // 26 bytes: even, no pad
        out.splice(at..at, chunk);
    }
    let riff_size = u32::try_from(out.len() - 8).map_err(|_| corrupt("RIFF too large"))?;
    out[4..8].copy_from_slice(&riff_size.to_le_bytes());
    Ok(Stripped {
        bytes: out,
        orientation,
    })
}

fn corrupt(what: &str) -> MediaError {
    MediaError::Undecodable(format!("malformed WebP: {what}"))
}
