//! Test images built with the image crate, and real metadata injected into them by hand
//! (TIFF/IFD bytes, JPEG segments, PNG and RIFF chunks), as cameras and editors write it.

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::codecs::webp::WebPEncoder;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Rgb, RgbImage};
use std::io::Cursor;

/// Text that only the injected metadata contains: its absence proves the removal.
pub const CAMERA: &[u8] = b"ChronicleCam";
pub const PLACE: &[u8] = b"SECRET-PLACE";
pub const ICC: &[u8] = b"ICC_PROFILE\0\x01\x01fake-profile-bytes";

pub fn picture(width: u32, height: u32) -> DynamicImage {
    DynamicImage::ImageRgb8(RgbImage::from_fn(width, height, |x, y| {
        Rgb([
            (x * 7 % 256) as u8,
            (y * 13 % 256) as u8,
            ((x + y) * 3 % 256) as u8,
        ])
    }))
}

pub fn png(image: &DynamicImage) -> Vec<u8> {
    let mut out = Vec::new();
    image.write_with_encoder(PngEncoder::new(&mut out)).unwrap();
    out
}

pub fn jpeg(image: &DynamicImage) -> Vec<u8> {
    let mut out = Vec::new();
    image
        .write_with_encoder(JpegEncoder::new_with_quality(&mut out, 90))
        .unwrap();
    out
}

/// A simple (VP8L-only) lossless WebP.
pub fn webp(image: &DynamicImage) -> Vec<u8> {
    let mut out = Vec::new();
    image
        .write_with_encoder(WebPEncoder::new_lossless(&mut out))
        .unwrap();
    out
}

/// A little-endian EXIF block as a phone writes it: IFD0 with Make, optionally
/// Orientation, and a pointer to a GPS IFD holding latitude/longitude and a datum.
pub fn exif_tiff(orientation: Option<u16>) -> Vec<u8> {
    let mut ifd0: Vec<(u16, u16, u32, Vec<u8>)> = vec![(0x010F, 2, 13, b"ChronicleCam\0".to_vec())];
    if let Some(value) = orientation {
        ifd0.push((0x0112, 3, 1, value.to_le_bytes().to_vec()));
    }
    ifd0.push((0x8825, 4, 1, Vec::new())); // GPS IFD offset, patched below
    let rational = |n: u32, d: u32| [n.to_le_bytes(), d.to_le_bytes()].concat();
    let gps: Vec<(u16, u16, u32, Vec<u8>)> = vec![
        (0x0001, 2, 2, b"N\0".to_vec()),
        (
            0x0002,
            5,
            3,
            [rational(52, 1), rational(31, 1), rational(1234, 100)].concat(),
        ),
        (0x0003, 2, 2, b"E\0".to_vec()),
        (
            0x0004,
            5,
            3,
            [rational(13, 1), rational(24, 1), rational(5678, 100)].concat(),
        ),
        (0x0012, 2, 13, b"SECRET-PLACE\0".to_vec()),
    ];
    let ifd_len = |n: usize| 2 + 12 * n + 4;
    let gps_at = 8 + ifd_len(ifd0.len()) + data_len(&ifd0);
    let mut tiff = b"II\x2a\0".to_vec();
    tiff.extend_from_slice(&8u32.to_le_bytes());
    let last = ifd0.len() - 1;
    ifd0[last].3 = (gps_at as u32).to_le_bytes().to_vec();
    write_ifd(&mut tiff, &ifd0);
    assert_eq!(tiff.len(), gps_at);
    write_ifd(&mut tiff, &gps);
    tiff
}

fn data_len(entries: &[(u16, u16, u32, Vec<u8>)]) -> usize {
    entries
        .iter()
        .filter(|e| e.3.len() > 4)
        .map(|e| e.3.len())
        .sum()
}

/// Entries, then the out-of-line values (those longer than 4 bytes) right after the IFD.
fn write_ifd(tiff: &mut Vec<u8>, entries: &[(u16, u16, u32, Vec<u8>)]) {
    let start = tiff.len();
    let mut data_at = start + 2 + 12 * entries.len() + 4;
    let mut data = Vec::new();
    tiff.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    for (tag, kind, count, value) in entries {
        tiff.extend_from_slice(&tag.to_le_bytes());
        tiff.extend_from_slice(&kind.to_le_bytes());
        tiff.extend_from_slice(&count.to_le_bytes());
        if value.len() > 4 {
            tiff.extend_from_slice(&(data_at as u32).to_le_bytes());
            data_at += value.len();
            data.extend_from_slice(value);
        } else {
            let mut inline = value.clone();
            inline.resize(4, 0);
            tiff.extend_from_slice(&inline);
        }
    }
    tiff.extend_from_slice(&0u32.to_le_bytes());
    tiff.extend_from_slice(&data);
}

pub fn exif_app1(orientation: Option<u16>) -> Vec<u8> {
    [b"Exif\0\0".as_slice(), &exif_tiff(orientation)].concat()
}

pub fn xmp() -> Vec<u8> {
    [
        b"http://ns.adobe.com/xap/1.0/\0".as_slice(),
        b"<x:xmpmeta><exif:GPSMapDatum>SECRET-PLACE</exif:GPSMapDatum></x:xmpmeta>",
    ]
    .concat()
}

/// Inserts JPEG segments (marker, payload) right after SOI.
pub fn jpeg_with(jpeg: &[u8], segments: &[(u8, &[u8])]) -> Vec<u8> {
    let mut out = jpeg[..2].to_vec();
    for (marker, payload) in segments {
        out.extend_from_slice(&[0xFF, *marker]);
        out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(payload);
    }
    out.extend_from_slice(&jpeg[2..]);
    out
}

pub fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut crc = crc32fast::Hasher::new();
    crc.update(kind);
    crc.update(data);
    [
        (data.len() as u32).to_be_bytes().as_slice(),
        kind,
        data,
        &crc.finalize().to_be_bytes(),
    ]
    .concat()
}

/// Inserts whole chunks right after IHDR (signature 8 + IHDR 25 bytes).
pub fn png_with(png: &[u8], chunks: &[Vec<u8>]) -> Vec<u8> {
    [&png[..33], &chunks.concat(), &png[33..]].concat()
}

pub fn riff_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = [kind.as_slice(), &(data.len() as u32).to_le_bytes(), data].concat();
    if data.len() % 2 == 1 {
        out.push(0);
    }
    out
}

/// Turns a simple WebP into an extended one: VP8X with `flags`, the image chunks, then
/// `trailing` chunks (EXIF and XMP go after the image data).
pub fn webp_extended(
    simple: &[u8],
    width: u32,
    height: u32,
    flags: u8,
    trailing: &[Vec<u8>],
) -> Vec<u8> {
    let mut vp8x = vec![flags, 0, 0, 0];
    vp8x.extend_from_slice(&(width - 1).to_le_bytes()[..3]);
    vp8x.extend_from_slice(&(height - 1).to_le_bytes()[..3]);
    let body = [
        riff_chunk(b"VP8X", &vp8x),
        simple[12..].to_vec(),
        trailing.concat(),
    ]
    .concat();
    let size = (body.len() + 4) as u32;
    [b"RIFF".as_slice(), &size.to_le_bytes(), b"WEBP", &body].concat()
}

/// Decoded pixels, normalised to RGBA8 so formats compare.
pub fn pixels(bytes: &[u8], format: ImageFormat) -> image::RgbaImage {
    ImageReader::with_format(Cursor::new(bytes), format)
        .decode()
        .unwrap()
        .to_rgba8()
}

/// What the image crate itself reads from a file's metadata.
pub fn exif_of(bytes: &[u8], format: ImageFormat) -> Option<Vec<u8>> {
    let reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.into_decoder().unwrap().exif_metadata().unwrap()
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
