//! Webhooks (docs/webhooks.md): Standard Webhooks signatures, the SSRF guard on every
//! outbound connection, and the dispatcher that sends the deliveries the `webhooks`
//! projector queues.

pub mod dispatch;
pub mod read;
pub mod signature;
pub mod ssrf;

pub use dispatch::Dispatcher;
pub use signature::WebhookSecret;
pub use ssrf::{AddressPolicy, UrlRefused};
