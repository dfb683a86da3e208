//! What every request handler can reach. Built once in `app::build`; no globals.

use std::sync::Arc;

use sqlx::PgPool;

use crate::config::Config;
use crate::metrics::Metrics;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    /// Runs as `chronicle_app`: read tables under RLS, event appends.
    pub db: PgPool,
    pub redis: redis::Client,
    pub metrics: Arc<Metrics>,
}
