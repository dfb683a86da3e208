//! Downloads keep the privacy promise (issue 11, defect 11): an image is served without
//! its metadata (PNG text chunks, JPEG EXIF/GPS) by default; the bytes as uploaded only
//! to the owner or an admin who asks with `?original=true`.

use chronicle::app::Mode;
use reqwest::StatusCode;

use crate::common::TestApp;
use crate::common::{Client, WORKER};

const NAME: &[u8] = b"Jane Q. Photographer";
const PLACE: &[u8] = b"SECRET-PLACE";

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn picture(format: image::ImageFormat) -> Vec<u8> {
    let img = image::RgbImage::from_fn(64, 32, |x, y| image::Rgb([x as u8 * 4, y as u8 * 8, 90]));
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut std::io::Cursor::new(&mut out), format)
        .unwrap();
    out
}

/// A real PNG with a `tEXt` chunk naming a person, right after IHDR.
fn png_with_author() -> Vec<u8> {
    let mut png = picture(image::ImageFormat::Png);
    let data = [b"Author\0".as_slice(), NAME].concat();
    let mut chunk = (data.len() as u32).to_be_bytes().to_vec();
    chunk.extend_from_slice(b"tEXt");
    chunk.extend_from_slice(&data);
    let crc = crc32fast::hash(&chunk[4..]);
    chunk.extend_from_slice(&crc.to_be_bytes());
    png.splice(33..33, chunk);
    png
}

/// A real JPEG with an EXIF APP1 segment: IFD0 points at a GPS IFD holding a
/// position's datum name, as phones write it.
fn jpeg_with_gps() -> Vec<u8> {
    let jpeg = picture(image::ImageFormat::Jpeg);
    let mut tiff = b"II\x2a\0".to_vec();
    tiff.extend_from_slice(&8u32.to_le_bytes());
    // IFD0 at 8: one entry, GPSInfo (0x8825, LONG) → the GPS IFD at 26.
    tiff.extend_from_slice(&1u16.to_le_bytes());
    tiff.extend_from_slice(&[0x25, 0x88, 4, 0]);
    tiff.extend_from_slice(&1u32.to_le_bytes());
    tiff.extend_from_slice(&26u32.to_le_bytes());
    tiff.extend_from_slice(&0u32.to_le_bytes());
    // GPS IFD at 26: GPSMapDatum (0x0012, ASCII, 13) stored at 44.
    tiff.extend_from_slice(&1u16.to_le_bytes());
    tiff.extend_from_slice(&[0x12, 0, 2, 0]);
    tiff.extend_from_slice(&13u32.to_le_bytes());
    tiff.extend_from_slice(&44u32.to_le_bytes());
    tiff.extend_from_slice(&0u32.to_le_bytes());
    tiff.extend_from_slice(&[PLACE, b"\0"].concat());
    let app1 = [b"Exif\0\0".as_slice(), &tiff].concat();
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

async fn get(t: &TestApp, who: &Client, path: &str, range: Option<&str>) -> reqwest::Response {
    let mut r = t.http.get(t.url(path)).bearer_auth(&who.token);
    if let Some(range) = range {
        r = r.header("range", range);
    }
    r.send().await.unwrap()
}

#[tokio::test]
async fn downloads_serve_the_metadata_free_copy_and_the_original_only_on_request() {
    let t = TestApp::spawn(
        Mode::Serve,
        &[WORKER[0], ("AUTH_RATE_LIMIT_PER_MINUTE", "1000")],
    )
    .await;
    let admin = t.signup("pics").await;
    let owner = t.join(&admin.token, "olga", "user").await;
    let other = t.join(&admin.token, "oscar", "user").await;
    let auditor = t.join(&admin.token, "audrey", "auditor").await;
    for (name, original, secret) in [
        ("portrait.png", png_with_author(), NAME),
        ("holiday.jpg", jpeg_with_gps(), PLACE),
    ] {
        assert!(contains(&original, secret));
        let accepted = t.upload_ok(&owner, name, original.clone()).await;
        let id = accepted["file_id"].as_str().unwrap().to_string();
        assert_eq!(t.settled_status(&id, 1).await, "completed");
        for path in [
            format!("/v1/files/{id}/content"),
            format!("/v1/files/{id}/versions/1/content"),
        ] {
            // By default: the stripped copy, for everyone who may read the file.
            let r = get(&t, &owner, &path, None).await;
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            let etag = r.headers()["etag"].to_str().unwrap().to_string();
            let length: usize = r.headers()["content-length"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            let served = r.bytes().await.unwrap();
            assert!(!contains(&served, secret), "{name}: metadata came back");
            assert_eq!(served.len(), length);
            assert_ne!(&served[..], &original[..]);
            image::load_from_memory(&served).expect("still a valid image");
            assert_eq!(
                get(&t, &auditor, &path, None).await.bytes().await.unwrap(),
                served
            );
            // ETag and ranges describe the bytes served.
            let r = t
                .http
                .get(t.url(&path))
                .bearer_auth(&owner.token)
                .header("if-none-match", &etag)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
            let r = get(&t, &owner, &path, Some("bytes=0-9")).await;
            assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
            assert_eq!(
                r.headers()["content-range"].to_str().unwrap(),
                format!("bytes 0-9/{}", served.len())
            );
            assert_eq!(r.bytes().await.unwrap(), served[..10]);
            let r = get(&t, &owner, &path, Some(&format!("bytes={}-", served.len()))).await;
            assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);

            // The original: owner and admin, on request.
            let original_path = format!("{path}?original=true");
            for who in [&owner, &admin] {
                let r = get(&t, who, &original_path, None).await;
                assert_eq!(r.status(), StatusCode::OK);
                assert_ne!(r.headers()["etag"].to_str().unwrap(), etag);
                assert_eq!(&r.bytes().await.unwrap()[..], &original[..]);
            }
            let r = get(&t, &auditor, &original_path, None).await;
            assert_eq!(r.status(), StatusCode::FORBIDDEN);
            for p in [&path, &original_path] {
                assert_eq!(
                    get(&t, &other, p, None).await.status(),
                    StatusCode::NOT_FOUND
                );
            }
            let r = get(&t, &owner, &format!("{path}?original=perhaps"), None).await;
            assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        }
    }
    t.app.stop().await;
}
