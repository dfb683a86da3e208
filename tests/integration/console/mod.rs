//! The web console (src/console, docs/console.md): its security design over plain HTTP
//! (`security.rs`: cookie, CSRF, CSP, assets, tenant isolation), and end to end in a
//! headless Chromium (`browser.rs`, tests/browser/console.mjs).

mod browser;
mod security;
