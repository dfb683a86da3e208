//! `Range` values too large for a u64 (issue 11): an end or suffix past the file is
//! clamped to it (RFC 9110 §14.1.2) → 206; a start past the file → 416. They answered 500.

use chronicle::app::Mode;
use reqwest::StatusCode;
use serde_json::Value;

use crate::common::TestApp;
use crate::common::WORKER;

fn png(width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(width, height, |x, y| image::Rgb([x as u8, y as u8, 9]));
    let mut png = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    png
}

#[tokio::test]
async fn overflowing_ranges_are_clamped_or_unsatisfiable_never_500() {
    let t = TestApp::spawn(Mode::Serve, WORKER).await;
    let c = t.signup("ranges").await;
    let accepted = t.upload_ok(&c, "picture.png", png(64, 32)).await;
    let id = accepted["file_id"].as_str().unwrap().to_string();
    assert_eq!(t.settled_status(&id, 1).await, "completed");
    let get = |path: String, range: Option<String>| {
        let mut r = t.http.get(t.url(&path)).bearer_auth(&c.token);
        if let Some(range) = range {
            r = r.header("range", range);
        }
        r.send()
    };
    let max = u64::MAX;
    let huge = "9".repeat(30);
    for path in [
        format!("/v1/files/{id}/content"),
        format!("/v1/files/{id}/versions/1/content"),
        format!("/v1/files/{id}/thumbnail"),
    ] {
        let whole = get(path.clone(), None).await.unwrap();
        assert_eq!(whole.status(), StatusCode::OK, "{path}");
        let whole = whole.bytes().await.unwrap();
        let size = whole.len();
        for clamped in [
            format!("bytes=0-{max}"),
            format!("bytes=0-{huge}"),
            format!("bytes=-{max}"),
            format!("bytes=-{huge}"),
        ] {
            let r = get(path.clone(), Some(clamped.clone())).await.unwrap();
            assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT, "{path} {clamped}");
            let expected = format!("bytes 0-{}/{size}", size - 1);
            assert_eq!(
                r.headers()["content-range"],
                expected.as_str(),
                "{path} {clamped}"
            );
            assert_eq!(r.bytes().await.unwrap(), whole, "{path} {clamped}");
        }
        for unsatisfiable in [
            format!("bytes={max}-"),
            format!("bytes={max}-{max}"),
            format!("bytes={huge}-"),
            format!("bytes={size}-{max}"),
        ] {
            let r = get(path.clone(), Some(unsatisfiable.clone()))
                .await
                .unwrap();
            assert_eq!(
                r.status(),
                StatusCode::RANGE_NOT_SATISFIABLE,
                "{path} {unsatisfiable}"
            );
            assert_eq!(
                r.headers()["content-range"],
                format!("bytes */{size}").as_str()
            );
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["error"]["code"], "range_not_satisfiable");
        }
    }
}
