//! Decoding under limits and the thumbnail itself.

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::error::ImageError;
use image::metadata::Orientation;
use image::{ColorType, DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};

use super::{MediaError, MediaLimits};

/// JPEG quality of thumbnails: small files without visible blocking at 256 px.
const JPEG_QUALITY: u8 = 80;
/// Bytes per pixel of the widest buffer the PNG/JPEG/WebP decoders produce (RGBA, 16 bit).
const MAX_BYTES_PER_PIXEL: u64 = 8;

pub(super) struct Thumbnail {
    pub bytes: Vec<u8>,
    pub mime: &'static str,
    /// Of the original, as displayed (orientation applied).
    pub original_width: u32,
    pub original_height: u32,
}

pub(super) fn make(
    input: &[u8],
    format: ImageFormat,
    orientation: Orientation,
    limits: &MediaLimits,
) -> Result<Thumbnail, MediaError> {
    let image = decode(input, format, limits)?;
    let (stored_width, stored_height) = (image.width(), image.height());
    let (width, height) = fit(stored_width, stored_height, limits.thumbnail_edge);
    // Shrink first, rotate second: rotating the full-size image would copy all of it.
    let mut thumbnail = if (width, height) == (stored_width, stored_height) {
        image
    } else {
        image.thumbnail_exact(width, height)
    };
    thumbnail.apply_orientation(orientation);
    let (original_width, original_height) = if swaps_axes(orientation) {
        (stored_height, stored_width)
    } else {
        (stored_width, stored_height)
    };
    let (bytes, mime) = encode(thumbnail, format)?;
    Ok(Thumbnail {
        bytes,
        mime,
        original_width,
        original_height,
    })
}

/// Decodes the first frame, refusing oversized images after reading only the header,
/// before the pixel buffer is allocated.
fn decode(
    input: &[u8],
    format: ImageFormat,
    limits: &MediaLimits,
) -> Result<DynamicImage, MediaError> {
    let mut image_limits = Limits::default();
    image_limits.max_alloc = Some(limits.max_pixels.saturating_mul(MAX_BYTES_PER_PIXEL));
    let mut reader = ImageReader::with_format(Cursor::new(input), format);
    reader.limits(image_limits);
    let decoder = reader.into_decoder().map_err(from_image)?;
    let (width, height) = decoder.dimensions();
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(MediaError::TooLarge);
    }
    if width == 0 || height == 0 {
        return Err(MediaError::Undecodable("image has no pixels".into()));
    }
    DynamicImage::from_decoder(decoder).map_err(from_image)
}

/// The largest size with the same aspect ratio whose longest edge is at most `edge`;
/// images already that small keep their size (a thumbnail never enlarges).
pub(super) fn fit(width: u32, height: u32, edge: u32) -> (u32, u32) {
    let edge = u64::from(edge.max(1));
    let longest = u64::from(width.max(height));
    if longest <= edge {
        return (width, height);
    }
    // Rounded to nearest, at least one pixel; the result is ≤ edge, so it fits in u32.
    let scale = |side: u32| ((u64::from(side) * edge + longest / 2) / longest).max(1) as u32;
    (scale(width), scale(height))
}

fn swaps_axes(orientation: Orientation) -> bool {
    matches!(
        orientation,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    )
}

/// JPEG stays JPEG (photos); PNG and WebP become PNG, which keeps transparency and is
/// universally displayable (the image crate writes only lossless WebP, larger than PNG).
fn encode(
    thumbnail: DynamicImage,
    format: ImageFormat,
) -> Result<(Vec<u8>, &'static str), MediaError> {
    let mut bytes = Vec::new();
    let mime = if format == ImageFormat::Jpeg {
        let thumbnail = match thumbnail.color() {
            ColorType::L8 | ColorType::Rgb8 => thumbnail,
            _ => DynamicImage::ImageRgb8(thumbnail.to_rgb8()),
        };
        let encoder = JpegEncoder::new_with_quality(&mut bytes, JPEG_QUALITY);
        thumbnail.write_with_encoder(encoder).map_err(from_image)?;
        "image/jpeg"
    } else {
        let thumbnail = match thumbnail.color() {
            ColorType::L8 | ColorType::La8 | ColorType::Rgb8 | ColorType::Rgba8 => thumbnail,
            color if color.has_alpha() => DynamicImage::ImageRgba8(thumbnail.to_rgba8()),
            _ => DynamicImage::ImageRgb8(thumbnail.to_rgb8()),
        };
        thumbnail
            .write_with_encoder(PngEncoder::new(&mut bytes))
            .map_err(from_image)?;
        "image/png"
    };
    Ok((bytes, mime))
}

fn from_image(error: ImageError) -> MediaError {
    match error {
        ImageError::Limits(_) => MediaError::TooLarge,
        other => MediaError::Undecodable(other.to_string()),
    }
}
