//! A deliberately small User-Agent parser: client family + major version and the OS,
//! enough to label "Firefox 120 on Linux" in a device list. Not a UA database: anything
//! unrecognised is "Unknown client" / "Unknown OS". Pure and deterministic, because the
//! `devices` projector stores its output and rebuilds must reproduce it.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedUserAgent {
    pub name: String,
    pub os: String,
}

pub const UNKNOWN_CLIENT: &str = "Unknown client";
pub const UNKNOWN_OS: &str = "Unknown OS";

pub fn parse(ua: &str) -> ParsedUserAgent {
    ParsedUserAgent {
        name: client(ua),
        os: os(ua),
    }
}

/// Client family, most specific first: Edge and Opera also claim Chrome and Safari,
/// Chrome also claims Safari, every browser claims Mozilla.
fn client(ua: &str) -> String {
    let ua = ua.trim();
    if ua.is_empty() {
        return UNKNOWN_CLIENT.into();
    }
    if ua.starts_with("Chronicle-CLI") {
        return "Chronicle-CLI".into();
    }
    const FAMILIES: &[(&str, &str)] = &[
        ("curl/", "curl"),
        ("Edg/", "Edge"),
        ("EdgA/", "Edge"),
        ("EdgiOS/", "Edge"),
        ("Edge/", "Edge"),
        ("OPR/", "Opera"),
        ("SamsungBrowser/", "Samsung Internet"),
        ("Firefox/", "Firefox"),
        ("FxiOS/", "Firefox"),
        ("CriOS/", "Chrome"),
        ("Chromium/", "Chromium"),
        ("Chrome/", "Chrome"),
    ];
    for (token, family) in FAMILIES {
        if let Some(version) = token_value(ua, token) {
            return with_major(family, version);
        }
    }
    // Safari's own version is in `Version/`; its `Safari/` token is the WebKit build.
    if token_value(ua, "Safari/").is_some() {
        return match token_value(ua, "Version/") {
            Some(version) => with_major("Safari", version),
            None => "Safari".into(),
        };
    }
    UNKNOWN_CLIENT.into()
}

fn os(ua: &str) -> String {
    // iOS says "like Mac OS X" and Android says "Linux": check them before macOS/Linux.
    if contains_any(ua, &["iPhone", "iPad", "iPod"]) {
        return "iOS".into();
    }
    if let Some(rest) = after(ua, "Android") {
        let major = major(rest.trim_start());
        return if major.is_empty() {
            "Android".into()
        } else {
            format!("Android {major}")
        };
    }
    if let Some(rest) = after(ua, "Windows NT ") {
        let version: String = rest
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        return match version.as_str() {
            // Windows 11 still reports NT 10.0 in the User-Agent.
            "10.0" => "Windows 10/11",
            "6.3" => "Windows 8.1",
            "6.2" => "Windows 8",
            "6.1" => "Windows 7",
            _ => "Windows",
        }
        .into();
    }
    if ua.contains("Windows") {
        return "Windows".into();
    }
    if ua.contains("CrOS") {
        return "ChromeOS".into();
    }
    if contains_any(ua, &["Macintosh", "Mac OS X"]) {
        return "macOS".into();
    }
    if ua.contains("Linux") {
        return "Linux".into();
    }
    UNKNOWN_OS.into()
}

/// The text after `token` where the token starts a word (start, space, `(`, `;` before
/// it), so `Chrome/` does not match inside `HeadlessChrome/`.
fn token_value<'a>(ua: &'a str, token: &str) -> Option<&'a str> {
    let mut from = 0;
    while let Some(i) = ua[from..].find(token) {
        let at = from + i;
        let boundary = ua[..at]
            .chars()
            .next_back()
            .is_none_or(|c| c == ' ' || c == '(' || c == ';');
        if boundary {
            return Some(&ua[at + token.len()..]);
        }
        from = at + token.len();
    }
    None
}

fn after<'a>(ua: &'a str, needle: &str) -> Option<&'a str> {
    ua.find(needle).map(|i| &ua[i + needle.len()..])
}

fn contains_any(ua: &str, needles: &[&str]) -> bool {
    needles.iter().any(|n| ua.contains(n))
}

fn major(version: &str) -> &str {
    let end = version
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(version.len());
    &version[..end]
}

fn with_major(family: &str, version: &str) -> String {
    match major(version) {
        "" => family.into(),
        m => format!("{family} {m}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(ua: &str, name: &str, os: &str) {
        assert_eq!(
            parse(ua),
            ParsedUserAgent {
                name: name.into(),
                os: os.into()
            },
            "{ua}"
        );
    }

    #[test]
    fn desktop_browsers() {
        check(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Safari/537.36",
            "Chrome 119",
            "Windows 10/11",
        );
        check(
            "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
            "Firefox 120",
            "Linux",
        );
        check(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.61",
            "Edge 120",
            "Windows 10/11",
        );
        check(
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
            "Safari 17",
            "macOS",
        );
        check(
            "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/118.0.0.0 Safari/537.36",
            "Chrome 118",
            "ChromeOS",
        );
        check(
            "Mozilla/5.0 (Windows NT 6.1; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/109.0.0.0 Safari/537.36 OPR/95.0.0.0",
            "Opera 95",
            "Windows 7",
        );
    }

    #[test]
    fn mobile_browsers() {
        check(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1.2 Mobile/15E148 Safari/604.1",
            "Safari 17",
            "iOS",
        );
        check(
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.6045.163 Mobile Safari/537.36",
            "Chrome 119",
            "Android 14",
        );
        check(
            "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36 EdgA/120.0.0.0",
            "Edge 120",
            "Android 10",
        );
        check(
            "Mozilla/5.0 (iPad; CPU OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/119.0.6045.169 Mobile/15E148 Safari/604.1",
            "Chrome 119",
            "iOS",
        );
        check(
            "Mozilla/5.0 (Android 14; Mobile; rv:120.0) Gecko/120.0 Firefox/120.0",
            "Firefox 120",
            "Android 14",
        );
    }

    #[test]
    fn tools_and_unknowns() {
        check("curl/8.4.0", "curl 8", UNKNOWN_OS);
        check("Chronicle-CLI/0.1.0", "Chronicle-CLI", UNKNOWN_OS);
        check("", UNKNOWN_CLIENT, UNKNOWN_OS);
        check("   ", UNKNOWN_CLIENT, UNKNOWN_OS);
        check("python-requests/2.31.0", UNKNOWN_CLIENT, UNKNOWN_OS);
        // A word containing a family token is not that family.
        check(
            "Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/120.0.0.0",
            UNKNOWN_CLIENT,
            "Linux",
        );
        // A family without a version still gets its name.
        check("Firefox/", "Firefox", UNKNOWN_OS);
        check("Mozilla/5.0 (Linux; Android) Chrome/x", "Chrome", "Android");
    }

    #[test]
    fn parsing_is_deterministic_and_total() {
        for ua in ["", "é/ü (;;(", "Android", "Windows NT ", "Version/ Safari/"] {
            assert_eq!(parse(ua), parse(ua));
        }
    }
}
