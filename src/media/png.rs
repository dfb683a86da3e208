//! Byte-level metadata removal for PNG: chunks are copied whole (their CRCs stay valid)
//! or dropped whole, so the decoded pixels cannot change.
//!
//! Dropped: eXIf (EXIF incl. GPS), tEXt/zTXt/iTXt (free text and XMP, which cameras and
//! editors fill with authors, software, comments, places) and tIME. Every other chunk,
//! known or not, is kept, as is their order. Bytes after IEND are dropped. The orientation
//! survives as a minimal eXIf chunk (see `exif.rs`).

use image::metadata::Orientation;

use super::MediaError;
use super::Stripped;
use super::exif;

const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
const DROPPED: [&[u8; 4]; 5] = [b"eXIf", b"tEXt", b"zTXt", b"iTXt", b"tIME"];
/// The PNG specification caps a chunk's length at 2^31 - 1.
const MAX_CHUNK_LEN: usize = 0x7FFF_FFFF;

pub(super) fn strip(input: &[u8]) -> Result<Stripped, MediaError> {
    if !input.starts_with(SIGNATURE) {
        return Err(MediaError::NotAnImage);
    }
    let mut out = Vec::with_capacity(input.len());
    out.extend_from_slice(SIGNATURE);
    let mut orientation = None;
    let mut exif_at = None;
    let mut pos = SIGNATURE.len();
    loop {
        let Some(header) = input.get(pos..pos + 8) else {
            return Err(corrupt("truncated before IEND"));
        };
        let length = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let kind: [u8; 4] = [header[4], header[5], header[6], header[7]];
        if length > MAX_CHUNK_LEN || !kind.iter().all(u8::is_ascii_alphabetic) {
            return Err(corrupt("invalid chunk header"));
        }
        // length, type, data, CRC
        let Some(end) = pos.checked_add(12 + length) else {
            return Err(corrupt("chunk runs past the end"));
        };
        let Some(chunk) = input.get(pos..end) else {
            return Err(corrupt("chunk runs past the end"));
        };
        if &kind == b"eXIf" && orientation.is_none() {
            orientation = Some(exif::orientation_of(&chunk[8..8 + length]));
            exif_at = Some(out.len());
        }
        if !DROPPED.contains(&&kind) {
            out.extend_from_slice(chunk);
        }
        pos = end;
        if &kind == b"IEND" {
            break;
        }
    }
    let orientation = orientation.unwrap_or(Orientation::NoTransforms);
    if let (Some(at), Some(tiff)) = (exif_at, exif::minimal_tiff(orientation)) {
        out.splice(at..at, chunk(b"eXIf", &tiff));
    }
    Ok(Stripped {
        bytes: out,
        orientation,
    })
}

/// A complete chunk: length, type, data and the CRC over type and data.
fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut crc = crc32fast::Hasher::new();
    crc.update(kind);
    crc.update(data);
    let mut out = Vec::with_capacity(12 + data.len());
    // Only ever called with the 26-byte minimal EXIF block.
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc.finalize().to_be_bytes());
    out
}

fn corrupt(what: &str) -> MediaError {
    MediaError::Undecodable(format!("malformed PNG: {what}"))
}
