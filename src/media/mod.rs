//! Image optimisation for the worker: metadata stripping (GPS privacy) and thumbnails for
//! PNG, JPEG and WebP.
//!
//! Pure and synchronous (CPU-bound: call it from `spawn_blocking`). Stripping works on the
//! container's bytes — whole segments/chunks are dropped, nothing is re-encoded — so the
//! stripped file decodes to exactly the original pixels at the original quality. See
//! docs/architecture.md, "Images".

mod exif;
mod jpeg;
mod png;
mod thumbnail;
mod webp;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod tests;

use std::fmt;

use image::ImageFormat;
use image::metadata::Orientation;

/// Bounds on what `optimise` accepts, so one upload cannot exhaust a worker's memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MediaLimits {
    /// Larger inputs are refused with `TooLarge` without being parsed.
    pub max_input_bytes: u64,
    /// Width × height above this is refused after reading only the header; it also caps
    /// the decoder's allocations (8 bytes per pixel, the widest format decoded here).
    pub max_pixels: u64,
    /// The longest edge of a thumbnail; smaller images are not enlarged.
    pub thumbnail_edge: u32,
}

impl Default for MediaLimits {
    fn default() -> Self {
        Self {
            max_input_bytes: 64 * 1024 * 1024,
            max_pixels: 50_000_000,
            thumbnail_edge: 256,
        }
    }
}

/// What the worker stores for an optimised image.
pub struct Optimised {
    /// The original bytes with metadata (EXIF incl. GPS, XMP, text chunks) removed
    /// byte-level, pixels untouched; `None` when stripping would change nothing. The EXIF
    /// orientation is kept (as a freshly built block) so photos keep displaying upright.
    pub stripped: Option<Vec<u8>>,
    pub thumbnail: Vec<u8>,
    pub thumbnail_mime: &'static str,
    /// Of the original as displayed, i.e. after its EXIF orientation is applied.
    pub width: u32,
    pub height: u32,
}

impl fmt::Debug for Optimised {
    // Sizes only: the bytes themselves are megabytes of noise in a log or test failure.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Optimised")
            .field("stripped_len", &self.stripped.as_ref().map(Vec::len))
            .field("thumbnail_len", &self.thumbnail.len())
            .field("thumbnail_mime", &self.thumbnail_mime)
            .field("width", &self.width)
            .field("height", &self.height)
            .finish()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MediaError {
    /// The bytes do not start with the signature of the type they were detected as.
    #[error("not an image of the detected type")]
    NotAnImage,
    /// Over `MediaLimits`: input size or pixel count (e.g. a decompression bomb).
    #[error("image exceeds the size or pixel limits")]
    TooLarge,
    /// A malformed container or pixel data; the text says what, without any path.
    #[error("undecodable image: {0}")]
    Undecodable(String),
}

/// The container after stripping, and the orientation its EXIF declared.
struct Stripped {
    bytes: Vec<u8>,
    orientation: Orientation,
}

/// Strips metadata from and makes a thumbnail of an image.
///
/// `mime` is the type detected from magic bytes (src/uploads/mime.rs). `Ok(None)` for
/// types that are not optimised (anything but image/png, image/jpeg, image/webp).
pub fn optimise(
    input: &[u8],
    mime: &str,
    limits: &MediaLimits,
) -> Result<Option<Optimised>, MediaError> {
    type Strip = fn(&[u8]) -> Result<Stripped, MediaError>;
    let (strip, format): (Strip, ImageFormat) = match mime {
        "image/png" => (png::strip, ImageFormat::Png),
        "image/jpeg" => (jpeg::strip, ImageFormat::Jpeg),
        "image/webp" => (webp::strip, ImageFormat::WebP),
        _ => return Ok(None),
    };
    if u64::try_from(input.len()).map_or(true, |len| len > limits.max_input_bytes) {
        return Err(MediaError::TooLarge);
    }
    let stripped = strip(input)?;
    // The thumbnail is decoded from the stripped bytes: if stripping had broken the
    // file, this fails instead of the broken file being stored.
    let thumbnail = thumbnail::make(&stripped.bytes, format, stripped.orientation, limits)?;
    Ok(Some(Optimised {
        stripped: (stripped.bytes != input).then_some(stripped.bytes),
        thumbnail: thumbnail.bytes,
        thumbnail_mime: thumbnail.mime,
        width: thumbnail.original_width,
        height: thumbnail.original_height,
    }))
}
