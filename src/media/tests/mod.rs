//! The module's contract: metadata gone byte-level with pixels untouched, thumbnails of
//! the right size, limits enforced before allocation, and no panic on any input.

mod decoding;
mod stripping;

use image::metadata::Orientation;
use image::{ImageDecoder, ImageFormat, ImageReader};
use std::io::Cursor;

use super::fixtures::*;
use super::{MediaError, MediaLimits, Optimised, optimise};

pub fn run(bytes: &[u8], mime: &str) -> Result<Option<Optimised>, MediaError> {
    optimise(bytes, mime, &MediaLimits::default())
}

pub fn optimised(bytes: &[u8], mime: &str) -> Optimised {
    run(bytes, mime).unwrap().expect("an optimised type")
}

pub fn assert_no_private_metadata(bytes: &[u8]) {
    for needle in [CAMERA, PLACE, b"Exif".as_slice(), b"http://ns.adobe.com"] {
        assert!(
            !contains(bytes, needle),
            "{:?} survived",
            String::from_utf8_lossy(needle)
        );
    }
}

pub fn orientation_of(bytes: &[u8], format: ImageFormat) -> Orientation {
    let reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.into_decoder().unwrap().orientation().unwrap()
}
