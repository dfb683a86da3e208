//! What every request passes through, whatever its resource: request ids, security
//! headers and CORS, logging and metrics, timeouts, the outage guard, rate limits and
//! budgets, the text rule, the JSON body limit, idempotency keys, read-your-writes
//! routing to replicas, and the typed extractors (`ApiPath`, `ApiQuery`, `ApiJson`, the
//! caller) whose rejections are the one error shape.

pub(crate) mod budget;
pub(crate) mod caller;
pub(crate) mod extract;
pub mod headers;
pub mod idempotency;
pub mod json;
pub(crate) mod observe;
pub(crate) mod outage;
pub mod ratelimit;
pub(crate) mod read_routing;
pub(crate) mod streamed_keys;
pub(crate) mod text;
pub(crate) mod unread;
