//! The web console (src/console, docs/console.md): its security design over plain HTTP
//! (`security.rs`: cookie, CSRF, CSP, assets, tenant isolation), and end to end in a
//! headless Chromium (`browser.rs`, tests/browser/console.mjs; `pages.rs`, the history,
//! analytics, admin and API reference pages, tests/browser/console-pages.mjs), and the
//! notifications page over HTTP (`notifications.rs`).

mod browser;
mod notifications;
mod pages;
mod security;
