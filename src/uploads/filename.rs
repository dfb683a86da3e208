//! Client-supplied filenames, made safe to store and to echo back in headers. The
//! original stays available as display text only; paths and blob keys never use it.

const MAX_BYTES: usize = 255;
const RESERVED_CHARS: &[char] = &['<', '>', ':', '"', '/', '\\', '|', '?', '*'];
/// Names Windows refuses whatever the extension (`CON.txt` is still `CON`).
const RESERVED_NAMES: &[&str] = &[
    "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8",
    "COM9", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
];

/// A filename with no directory part, no traversal, no control or reserved characters,
/// not a reserved device name, at most 255 bytes (the extension kept when shortening),
/// never empty.
pub fn sanitize(original: &str) -> String {
    // Only the last component of either separator: "../../etc/passwd" → "passwd".
    let base = original.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = base
        .chars()
        .filter(|c| !c.is_control())
        .map(|c| if RESERVED_CHARS.contains(&c) { '_' } else { c })
        .collect();
    // Leading dots would make hidden files or "..", trailing dots/spaces vanish on Windows.
    let trimmed = cleaned.trim_matches(|c: char| c == '.' || c.is_whitespace());
    let mut name = if trimmed.is_empty() {
        "file".to_string()
    } else {
        trimmed.to_string()
    };
    let stem = name
        .split('.')
        .next()
        .unwrap_or_default()
        .trim_end()
        .to_ascii_uppercase();
    if RESERVED_NAMES.contains(&stem.as_str()) {
        name.insert(0, '_');
    }
    shorten(name)
}

fn shorten(name: String) -> String {
    if name.len() <= MAX_BYTES {
        return name;
    }
    let (stem, ext) = match name.rfind('.') {
        Some(i) if name.len() - i <= 16 => (&name[..i], &name[i..]),
        _ => (name.as_str(), ""),
    };
    let mut cut = MAX_BYTES - ext.len();
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{ext}", &stem[..cut])
}

/// The client's name as display text: control characters dropped, at most 255 bytes.
pub fn display_text(original: &str) -> String {
    let mut text: String = original.chars().filter(|c| !c.is_control()).collect();
    while text.len() > 255 {
        text.pop();
    }
    if text.trim().is_empty() {
        "file".into()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn traversal_and_separators_are_removed() {
        assert_eq!(sanitize("../../etc/passwd"), "passwd");
        assert_eq!(sanitize("..\\..\\windows\\system32\\cmd.exe"), "cmd.exe");
        assert_eq!(sanitize(".."), "file");
        assert_eq!(sanitize("/"), "file");
        assert_eq!(sanitize(""), "file");
        assert_eq!(sanitize(".bashrc"), "bashrc");
    }

    #[test]
    fn control_and_reserved_characters_are_neutralised() {
        assert_eq!(sanitize("a\u{0}b\nc.txt"), "abc.txt");
        assert_eq!(sanitize("what?<>|\".txt"), "what_____.txt");
        assert_eq!(sanitize("report. "), "report");
        assert_eq!(sanitize("résumé 2024.pdf"), "résumé 2024.pdf");
    }

    #[test]
    fn reserved_device_names_are_prefixed() {
        assert_eq!(sanitize("CON"), "_CON");
        assert_eq!(sanitize("con.txt"), "_con.txt");
        assert_eq!(sanitize("lpt9.tar.gz"), "_lpt9.tar.gz");
        assert_eq!(sanitize("console.txt"), "console.txt");
    }

    #[test]
    fn long_names_keep_their_extension() {
        let long = format!("{}.pdf", "é".repeat(300));
        let short = sanitize(&long);
        assert!(short.len() <= 255);
        assert!(short.ends_with(".pdf"));
    }

    proptest! {
        #[test]
        fn every_result_is_safe(name in any::<String>()) {
            let s = sanitize(&name);
            prop_assert!(!s.is_empty() && s.len() <= 255);
            prop_assert!(!s.contains(['/', '\\']) && !s.chars().any(char::is_control));
            prop_assert!(!s.starts_with('.') && s != "..");
            prop_assert_eq!(sanitize(&s), s.clone(), "sanitizing is idempotent");
        }
    }
}
