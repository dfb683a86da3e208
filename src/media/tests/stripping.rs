//! Stripping: metadata goes byte-level, everything else (and so every pixel) stays.

use image::ImageFormat;
use image::metadata::Orientation;

use super::*;
use crate::media::fixtures::*;

#[test]
fn jpeg_loses_exif_gps_xmp_and_comments_but_keeps_icc_and_pixels() {
    let base = jpeg(&picture(64, 48));
    let exif = exif_app1(None);
    let tagged = jpeg_with(
        &base,
        &[
            (0xE1, &exif),
            (0xE1, &xmp()),
            (0xFE, b"shot at SECRET-PLACE"),
            (0xE2, ICC),
            (0xED, b"Photoshop 3.0\08BIM SECRET-PLACE"),
        ],
    );
    // The injected block is real EXIF: the image crate itself finds it.
    assert!(contains(
        &exif_of(&tagged, ImageFormat::Jpeg).unwrap(),
        PLACE
    ));

    let result = optimised(&tagged, "image/jpeg");
    let stripped = result.stripped.expect("metadata was present");
    assert_no_private_metadata(&stripped);
    assert_eq!(
        stripped,
        jpeg_with(&base, &[(0xE2, ICC)]),
        "only metadata segments go"
    );
    assert_eq!(exif_of(&stripped, ImageFormat::Jpeg), None);
    assert_eq!(
        pixels(&stripped, ImageFormat::Jpeg),
        pixels(&tagged, ImageFormat::Jpeg)
    );
    assert_eq!((result.width, result.height), (64, 48));
}

#[test]
fn png_loses_exif_and_text_chunks_and_keeps_the_rest() {
    let base = png(&picture(40, 30));
    let tagged = png_with(
        &base,
        &[
            png_chunk(b"eXIf", &exif_tiff(None)),
            png_chunk(b"tEXt", b"Author\0SECRET-PLACE"),
            png_chunk(b"zTXt", b"Comment\0\0x\x9c\x03\0\0\0\0\x01"),
            png_chunk(
                b"iTXt",
                &[b"XML:com.adobe.xmp\0\0\0\0\0".as_slice(), &xmp()].concat(),
            ),
            png_chunk(b"tIME", &[0x07, 0xE8, 1, 2, 3, 4, 5]),
        ],
    );
    assert!(contains(
        &exif_of(&tagged, ImageFormat::Png).unwrap(),
        PLACE
    ));

    let result = optimised(&tagged, "image/png");
    let stripped = result.stripped.expect("metadata was present");
    assert_no_private_metadata(&stripped);
    for kind in [b"eXIf", b"tEXt", b"zTXt", b"iTXt", b"tIME"] {
        assert!(!contains(&stripped, kind));
    }
    assert_eq!(
        stripped, base,
        "every other chunk is copied whole, CRCs included"
    );
    assert_eq!(
        pixels(&stripped, ImageFormat::Png),
        pixels(&tagged, ImageFormat::Png)
    );
}

#[test]
fn webp_loses_exif_and_xmp_chunks_and_their_vp8x_flags() {
    let image = picture(30, 20);
    let simple = webp(&image);
    let trailing = [
        riff_chunk(b"EXIF", &exif_tiff(None)),
        riff_chunk(b"XMP ", &xmp()),
    ];
    let tagged = webp_extended(&simple, 30, 20, 0x08 | 0x04, &trailing);
    assert!(contains(
        &exif_of(&tagged, ImageFormat::WebP).unwrap(),
        PLACE
    ));

    let result = optimised(&tagged, "image/webp");
    let stripped = result.stripped.expect("metadata was present");
    assert_no_private_metadata(&stripped);
    assert_eq!(
        stripped,
        webp_extended(&simple, 30, 20, 0, &[]),
        "flags cleared, size fixed"
    );
    let riff_size = u32::from_le_bytes(stripped[4..8].try_into().unwrap()) as usize;
    assert_eq!(riff_size, stripped.len() - 8);
    assert_eq!(
        pixels(&stripped, ImageFormat::WebP),
        pixels(&tagged, ImageFormat::WebP)
    );
    assert_eq!(exif_of(&stripped, ImageFormat::WebP), None);
}

#[test]
fn images_without_metadata_are_not_rewritten() {
    let image = picture(50, 40);
    for (bytes, mime) in [
        (png(&image), "image/png"),
        (jpeg(&image), "image/jpeg"),
        (webp(&image), "image/webp"),
        (webp_extended(&webp(&image), 50, 40, 0, &[]), "image/webp"),
    ] {
        let result = optimised(&bytes, mime);
        assert!(result.stripped.is_none(), "{mime}");
        assert_eq!((result.width, result.height), (50, 40));
    }
}

#[test]
fn orientation_survives_stripping_and_turns_the_thumbnail() {
    let image = picture(40, 20);
    let exif = exif_app1(Some(6));
    let cases = [
        (
            jpeg_with(&jpeg(&image), &[(0xE1, &exif)]),
            "image/jpeg",
            ImageFormat::Jpeg,
        ),
        (
            png_with(&png(&image), &[png_chunk(b"eXIf", &exif_tiff(Some(6)))]),
            "image/png",
            ImageFormat::Png,
        ),
        (
            webp_extended(
                &webp(&image),
                40,
                20,
                0x08,
                &[riff_chunk(b"EXIF", &exif_tiff(Some(6)))],
            ),
            "image/webp",
            ImageFormat::WebP,
        ),
    ];
    for (tagged, mime, format) in cases {
        assert_eq!(orientation_of(&tagged, format), Orientation::Rotate90);
        let result = optimised(&tagged, mime);
        let stripped = result.stripped.expect("GPS was present");
        for needle in [CAMERA, PLACE] {
            assert!(!contains(&stripped, needle), "{mime}");
        }
        assert_eq!(
            orientation_of(&stripped, format),
            Orientation::Rotate90,
            "{mime}"
        );
        assert_eq!(pixels(&stripped, format), pixels(&tagged, format), "{mime}");
        // Displayed upright: a portrait photo reports and thumbnails as portrait.
        assert_eq!((result.width, result.height), (20, 40), "{mime}");
        let thumb = image::load_from_memory(&result.thumbnail).unwrap();
        assert_eq!((thumb.width(), thumb.height()), (20, 40), "{mime}");
    }
}
#[test]
fn metadata_after_the_image_data_and_trailers_are_dropped() {
    let image = picture(24, 16);
    let trailer = b"vendor trailer SECRET-PLACE".as_slice();

    // JPEG: a comment and EXIF between the last scan and EOI, a trailer after EOI (where
    // MPF secondary images with their own EXIF live).
    let base = jpeg(&image);
    let (body, eoi) = base.split_at(base.len() - 2);
    let late = jpeg_with(&[0xFF, 0xD8], &[(0xFE, PLACE), (0xE1, &exif_app1(None))]);
    let tagged = [body, &late[2..], eoi, trailer].concat();
    assert_eq!(optimised(&tagged, "image/jpeg").stripped, Some(base));

    // PNG: bytes after IEND.
    let base = png(&image);
    let tagged = [base.as_slice(), trailer].concat();
    assert_eq!(optimised(&tagged, "image/png").stripped, Some(base));

    // WebP: bytes past the RIFF size.
    let base = webp(&image);
    let tagged = [base.as_slice(), trailer].concat();
    assert_eq!(optimised(&tagged, "image/webp").stripped, Some(base));
}
