//! The one piece of EXIF that survives stripping: the orientation tag.
//!
//! Phones store portrait photos as landscape pixels plus `Orientation = 6`. Dropping the
//! whole EXIF block would make every such photo display sideways, so the stripped file gets
//! a freshly built, minimal EXIF block holding only that tag — no GPS, camera, owner or
//! time — and nothing of the original block is copied.

use image::metadata::Orientation;

/// The prefix JPEG's APP1 (and some PNG/WebP writers) put before the TIFF structure.
pub(super) const EXIF_PREFIX: &[u8] = b"Exif\0\0";

/// The orientation recorded in an EXIF payload (with or without the `Exif\0\0` prefix).
/// Anything unreadable counts as "no transform": a broken EXIF block must not make an
/// otherwise valid image fail.
pub(super) fn orientation_of(payload: &[u8]) -> Orientation {
    let tiff = payload.strip_prefix(EXIF_PREFIX).unwrap_or(payload);
    Orientation::from_exif_chunk(tiff).unwrap_or(Orientation::NoTransforms)
}

/// A minimal big-endian TIFF structure whose IFD0 holds only the orientation tag, or
/// `None` when the orientation is the identity (then no EXIF is needed at all).
pub(super) fn minimal_tiff(orientation: Orientation) -> Option<Vec<u8>> {
    if orientation == Orientation::NoTransforms {
        return None;
    }
    let mut tiff = Vec::with_capacity(26);
    tiff.extend_from_slice(b"MM\0\x2a"); // big-endian TIFF magic
    tiff.extend_from_slice(&8u32.to_be_bytes()); // IFD0 right after the header
    tiff.extend_from_slice(&1u16.to_be_bytes()); // one entry
    tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_be_bytes()); // count
    tiff.extend_from_slice(&u16::from(orientation.to_exif()).to_be_bytes());
    tiff.extend_from_slice(&[0, 0]); // value padding to 4 bytes
    tiff.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
    Some(tiff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_block_round_trips_every_orientation() {
        for value in 2..=8u8 {
            let orientation = Orientation::from_exif(value).unwrap();
            let tiff = minimal_tiff(orientation).unwrap();
            assert_eq!(orientation_of(&tiff), orientation);
            let mut prefixed = EXIF_PREFIX.to_vec();
            prefixed.extend_from_slice(&tiff);
            assert_eq!(orientation_of(&prefixed), orientation);
        }
        assert_eq!(minimal_tiff(Orientation::NoTransforms), None);
    }

    #[test]
    fn unreadable_exif_means_no_transform() {
        assert_eq!(orientation_of(b""), Orientation::NoTransforms);
        assert_eq!(
            orientation_of(b"Exif\0\0garbage"),
            Orientation::NoTransforms
        );
        // An IFD offset pointing far outside the block.
        assert_eq!(
            orientation_of(b"MM\0\x2a\xff\xff\xff\xff"),
            Orientation::NoTransforms
        );
    }
}
