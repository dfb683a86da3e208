//! Webhooks (docs/webhooks.md): Standard Webhooks signatures, the SSRF guard on every
//! outbound connection, and reads of endpoints and deliveries. The dispatcher that sends
//! the deliveries the `webhooks` projector queues is a background task of the worker
//! (src/worker/webhooks.rs): it runs commands, which use this module.

pub mod read;
pub mod signature;
pub mod ssrf;

pub use signature::WebhookSecret;
pub use ssrf::{AddressPolicy, UrlRefused};
