//! A `500` caused by an outage is a `503`. Errors from Postgres and Redis are mapped to
//! `503 service_unavailable` where their type survives (src/error.rs); some paths (the
//! event store's group commit, command retries) carry a failure only as text. For those,
//! a `500` is checked against the dependencies before it leaves: when Postgres or Redis
//! cannot be reached right now, the client gets `503` with `Retry-After`, so it retries
//! instead of reporting a bug. The probe runs only on the `500` path and is bounded.

use std::str::FromStr;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};

use crate::error::AppError;
use crate::state::AppState;

/// How long a probe may take: the request has already failed, the answer must be fast.
const PROBE_TIMEOUT: Duration = Duration::from_millis(300);

pub async fn unavailable_when_down(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    if response.status() != StatusCode::INTERNAL_SERVER_ERROR {
        return response;
    }
    let (postgres, redis) = tokio::join!(postgres_reachable(&state), redis_reachable(&state));
    let down: Vec<&str> = [("postgres", postgres), ("redis", redis)]
        .into_iter()
        .filter_map(|(name, up)| (!up).then_some(name))
        .collect();
    if down.is_empty() {
        return response;
    }
    tracing::warn!(unreachable = ?down, "a request failed during an outage; answering 503");
    AppError::Unavailable("a dependency is unavailable; retry shortly".into()).into_response()
}

/// A fresh connection, not one from the pool: the pool may be exhausted, not the server.
async fn postgres_reachable(state: &AppState) -> bool {
    let Ok(options) = PgConnectOptions::from_str(state.config.database_url.expose()) else {
        return true;
    };
    let probe = async {
        let mut conn = options.connect().await?;
        sqlx::query("SELECT 1").execute(&mut conn).await?;
        let _ = conn.close().await;
        Ok::<_, sqlx::Error>(())
    };
    matches!(tokio::time::timeout(PROBE_TIMEOUT, probe).await, Ok(Ok(())))
}

async fn redis_reachable(state: &AppState) -> bool {
    let mut conn = state.redis_conn.clone();
    let cmd = redis::cmd("PING");
    let ping = cmd.query_async::<String>(&mut conn);
    matches!(tokio::time::timeout(PROBE_TIMEOUT, ping).await, Ok(Ok(_)))
}
