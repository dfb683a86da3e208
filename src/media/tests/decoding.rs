//! Decoding: thumbnails, limits (decompression bombs), corrupt input, and no panic on
//! any bytes at all.

use image::{ImageFormat, ImageReader};
use proptest::prelude::*;
use std::io::Cursor;

use super::*;
use crate::media::fixtures::*;
use crate::media::thumbnail::fit;

#[test]
fn thumbnails_fit_the_edge_keep_the_aspect_and_the_family() {
    let cases = [
        (
            png(&picture(600, 300)),
            "image/png",
            (256, 128),
            "image/png",
            ImageFormat::Png,
        ),
        (
            jpeg(&picture(300, 600)),
            "image/jpeg",
            (128, 256),
            "image/jpeg",
            ImageFormat::Jpeg,
        ),
        (
            webp(&picture(512, 128)),
            "image/webp",
            (256, 64),
            "image/png",
            ImageFormat::Png,
        ),
        // Already small: never enlarged.
        (
            png(&picture(100, 50)),
            "image/png",
            (100, 50),
            "image/png",
            ImageFormat::Png,
        ),
    ];
    for (bytes, mime, size, thumb_mime, thumb_format) in cases {
        let result = optimised(&bytes, mime);
        assert_eq!(result.thumbnail_mime, thumb_mime);
        let thumb = ImageReader::with_format(Cursor::new(&result.thumbnail), thumb_format)
            .decode()
            .unwrap();
        assert_eq!((thumb.width(), thumb.height()), size, "{mime}");
    }
}

#[test]
fn fit_rounds_keeps_at_least_one_pixel_and_never_enlarges() {
    assert_eq!(fit(1000, 1000, 256), (256, 256));
    assert_eq!(fit(1000, 333, 256), (256, 85));
    assert_eq!(fit(5000, 1, 256), (256, 1));
    assert_eq!(fit(1, 5000, 256), (1, 256));
    assert_eq!(fit(200, 100, 256), (200, 100));
    assert_eq!(fit(u32::MAX, u32::MAX / 2, 256), (256, 128));
    assert_eq!(fit(10, 10, 0), (1, 1), "a zero edge still yields a pixel");
}

#[test]
fn truncated_or_corrupt_images_are_errors() {
    let image = picture(64, 48);
    let cases = [
        (png(&image), "image/png"),
        (jpeg(&image), "image/jpeg"),
        (webp(&image), "image/webp"),
    ];
    for (bytes, mime) in cases {
        for cut in [bytes.len() - 1, bytes.len() / 2, 20, 13] {
            let result = run(&bytes[..cut], mime);
            assert!(
                matches!(result, Err(MediaError::Undecodable(_))),
                "{mime} cut at {cut}: {result:?}"
            );
        }
    }
    // Pixel data damaged inside an intact container: PNG's IDAT CRC no longer matches.
    let mut damaged = png(&image);
    let idat = damaged.windows(4).position(|w| w == b"IDAT").unwrap();
    damaged[idat + 10] ^= 0xFF;
    assert!(matches!(
        run(&damaged, "image/png"),
        Err(MediaError::Undecodable(_))
    ));
}

#[test]
fn bytes_of_another_type_are_not_an_image() {
    let jpeg_bytes = jpeg(&picture(8, 8));
    assert_eq!(
        run(&jpeg_bytes, "image/png").unwrap_err(),
        MediaError::NotAnImage
    );
    assert_eq!(run(b"", "image/jpeg").unwrap_err(), MediaError::NotAnImage);
    assert_eq!(
        run(b"RIFF\0\0\0\0AVI ", "image/webp").unwrap_err(),
        MediaError::NotAnImage
    );
}

#[test]
fn other_types_are_not_optimised() {
    for mime in ["image/gif", "application/pdf", "text/plain", "IMAGE/PNG"] {
        assert!(run(&png(&picture(8, 8)), mime).unwrap().is_none(), "{mime}");
    }
}

#[test]
fn a_png_header_claiming_ten_gigapixels_is_refused_before_decoding() {
    // A valid IHDR for 100000 × 100000 RGBA: 40 GB if anything tried to allocate it.
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
    let bomb = [
        b"\x89PNG\r\n\x1a\n".as_slice(),
        &png_chunk(b"IHDR", &ihdr),
        &png_chunk(b"IDAT", b"x\x9c\x03\0\0\0\0\x01"),
        &png_chunk(b"IEND", b""),
    ]
    .concat();
    assert_eq!(run(&bomb, "image/png").unwrap_err(), MediaError::TooLarge);
}

#[test]
fn a_jpeg_frame_claiming_four_gigapixels_is_refused() {
    let mut bomb = jpeg(&picture(16, 16));
    let sof = bomb.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    // SOF0: marker, length (2), precision (1), height (2), width (2).
    bomb[sof + 5..sof + 9].copy_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]);
    assert_eq!(run(&bomb, "image/jpeg").unwrap_err(), MediaError::TooLarge);
}

#[test]
fn limits_are_configurable() {
    let bytes = png(&picture(64, 48));
    let pixels = MediaLimits {
        max_pixels: 64 * 48 - 1,
        ..MediaLimits::default()
    };
    assert_eq!(
        optimise(&bytes, "image/png", &pixels).unwrap_err(),
        MediaError::TooLarge
    );
    let exact = MediaLimits {
        max_pixels: 64 * 48,
        ..MediaLimits::default()
    };
    assert!(optimise(&bytes, "image/png", &exact).is_ok());
    let size = MediaLimits {
        max_input_bytes: bytes.len() as u64 - 1,
        ..MediaLimits::default()
    };
    assert_eq!(
        optimise(&bytes, "image/png", &size).unwrap_err(),
        MediaError::TooLarge
    );
    let edge = MediaLimits {
        thumbnail_edge: 16,
        ..MediaLimits::default()
    };
    let thumb = optimise(&bytes, "image/png", &edge)
        .unwrap()
        .unwrap()
        .thumbnail;
    assert_eq!(image::load_from_memory(&thumb).unwrap().width(), 16);
}

const MIMES: [&str; 3] = ["image/png", "image/jpeg", "image/webp"];

fn valid_images() -> Vec<(Vec<u8>, &'static str)> {
    let image = picture(12, 9);
    let exif = exif_app1(Some(3));
    vec![
        (
            png_with(&png(&image), &[png_chunk(b"eXIf", &exif_tiff(Some(3)))]),
            "image/png",
        ),
        (
            jpeg_with(&jpeg(&image), &[(0xE1, &exif), (0xFE, b"c")]),
            "image/jpeg",
        ),
        (
            webp_extended(
                &webp(&image),
                12,
                9,
                0x08,
                &[riff_chunk(b"EXIF", &exif_tiff(Some(3)))],
            ),
            "image/webp",
        ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512), which in 0..3usize) {
        let _ = run(&bytes, MIMES[which]);
    }

    #[test]
    fn arbitrary_bodies_behind_a_real_signature_never_panic(
        body in proptest::collection::vec(any::<u8>(), 0..512),
        which in 0..3usize,
    ) {
        let head: &[u8] = match which {
            0 => b"\x89PNG\r\n\x1a\n",
            1 => b"\xff\xd8",
            _ => b"RIFF\xff\xff\0\0WEBP",
        };
        let _ = run(&[head, &body].concat(), MIMES[which]);
    }

    #[test]
    fn damaged_real_images_never_panic(
        which in 0..3usize,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let (mut bytes, mime) = valid_images().swap_remove(which);
        for (at, value) in edits {
            let at = at.index(bytes.len());
            bytes[at] = value;
        }
        let cut = cut.index(bytes.len() + 1).max(bytes.len() / 2);
        // An edit may turn an EXIF marker into a kept one, so only "no panic, no hang"
        // holds for every damage.
        let _ = run(&bytes[..cut], mime);
    }
}
