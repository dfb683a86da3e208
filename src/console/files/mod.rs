//! Files: the list (search, sort, tag filters, the trash, live uploads) and a file's
//! page (versions, tags, rename, delete/restore, preview, shares, links, holds).
//!
//! Reads are server-rendered from the same queries the API answers with
//! (`queries::listing::list_files`, `queries::files::file_of`, …). Changes are made by the page's buttons calling the JSON
//! API itself — `fetch` with the session cookie and `X-CSRF-Token` (assets/actions.js) —
//! so a file has exactly one write path, the API's handlers and policy; htmx then
//! re-fetches the server-rendered part that changed. Uploads go to the API's tus
//! endpoint (assets/upload.js) and their progress comes from `/v1/events`.

mod list;
mod page;

pub use list::{list, table};
pub use page::page;

/// A byte count as people read it: `1.4 MB`.
pub fn human_size(bytes: i64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes.max(0) as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The words a status is shown with.
pub fn status_label(status: &str) -> &str {
    match status {
        "virus_failed" => "virus found",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_statuses_read_well() {
        assert_eq!(human_size(12), "12 B");
        assert_eq!(human_size(1_450_000), "1.4 MB");
        assert_eq!(status_label("virus_failed"), "virus found");
        assert_eq!(status_label("completed"), "completed");
    }
}
