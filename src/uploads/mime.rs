//! Content type from the bytes themselves (magic numbers), not from what the client
//! declared: the declared type is recorded, the detected one is what downloads serve.

/// Detects the MIME type from the first bytes of a file (the first 512 are plenty).
pub fn detect(head: &[u8]) -> &'static str {
    const SIGNATURES: &[(&[u8], &str)] = &[
        (b"\x89PNG\r\n\x1a\n", "image/png"),
        (b"\xff\xd8\xff", "image/jpeg"),
        (b"GIF87a", "image/gif"),
        (b"GIF89a", "image/gif"),
        (b"%PDF-", "application/pdf"),
        (b"PK\x03\x04", "application/zip"),
        (b"PK\x05\x06", "application/zip"),
        (b"\x1f\x8b", "application/gzip"),
        (b"7z\xbc\xaf\x27\x1c", "application/x-7z-compressed"),
        (b"ID3", "audio/mpeg"),
        (b"OggS", "audio/ogg"),
        (b"\x1a\x45\xdf\xa3", "video/webm"),
    ];
    if head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WEBP" {
        return "image/webp";
    }
    if head.len() >= 12 && &head[4..8] == b"ftyp" {
        return "video/mp4";
    }
    if let Some((_, mime)) = SIGNATURES.iter().find(|(magic, _)| head.starts_with(magic)) {
        return mime;
    }
    if looks_like_text(head) {
        "text/plain"
    } else {
        "application/octet-stream"
    }
}

/// UTF-8 without NULs or most control characters. A multi-byte character cut at the end
/// of `head` still counts as text.
fn looks_like_text(head: &[u8]) -> bool {
    if head.is_empty() {
        return false;
    }
    let valid = match std::str::from_utf8(head) {
        Ok(s) => s,
        Err(e) if e.error_len().is_none() => {
            std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => return false,
    };
    valid
        .chars()
        .all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t' | '\u{c}'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_formats_are_recognised_by_their_bytes() {
        assert_eq!(detect(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), "image/png");
        assert_eq!(detect(b"\xff\xd8\xff\xe0\0\x10JFIF"), "image/jpeg");
        assert_eq!(detect(b"RIFF\x24\0\0\0WEBPVP8 "), "image/webp");
        assert_eq!(detect(b"%PDF-1.7\n"), "application/pdf");
        assert_eq!(detect(b"PK\x03\x04\x14\0"), "application/zip");
        assert_eq!(detect(b"\0\0\0\x18ftypmp42"), "video/mp4");
        assert_eq!(detect(b"GIF89a\x01\0"), "image/gif");
    }

    #[test]
    fn text_and_binary_fallbacks() {
        assert_eq!(detect(b"hello, world\n"), "text/plain");
        assert_eq!(detect("héllo".as_bytes()), "text/plain");
        // A multi-byte character cut by the 512-byte window is still text.
        assert_eq!(detect(&"é".as_bytes()[..1]), "text/plain");
        assert_eq!(detect(b"\0\x01\x02binary"), "application/octet-stream");
        assert_eq!(detect(b""), "application/octet-stream");
        // A declared name or type cannot fool it: an EXE named .png is not an image.
        assert_eq!(detect(b"MZ\x90\0\x03\0"), "application/octet-stream");
    }
}
