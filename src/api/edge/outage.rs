//! Fast `503`s while a dependency is down.
//!
//! Postgres: a watcher keeps one connection of its own and pings it every
//! `WATCH_EVERY`; a stopped or restarting server breaks that connection at once. While it
//! is broken every request (but the health and metrics routes) is answered `503
//! service_unavailable` with `Retry-After` immediately, and requests already running are
//! answered the same way the moment the outage is seen, instead of waiting out the pool's
//! acquire timeout (which stays long enough for a busy pool). Handlers are cancel-safe
//! already: a client may disconnect at any point, and appends are atomic. The watcher
//! reconnects every `WATCH_EVERY`; the first success serves requests again, no restart.
//!
//! A `500` caused by an outage is a `503` too. Errors from Postgres and Redis are mapped
//! where their type survives (src/error.rs); some paths (the event store's group commit,
//! command retries) carry a failure only as text. For those, a `500` is checked against
//! the dependencies before it leaves.

use std::str::FromStr;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::error::{AppError, DATABASE_UNAVAILABLE, is_database_outage};
use crate::state::AppState;

/// How long a probe may take: the request has already failed, the answer must be fast.
const PROBE_TIMEOUT: Duration = Duration::from_millis(300);
/// How often the watcher pings (and, while down, reconnects).
const WATCH_EVERY: Duration = Duration::from_millis(250);
/// A ping or connect slower than this is abandoned and retried, but not counted as an
/// outage: a busy machine must not turn slowness into refusals. Only a refused, reset or
/// terminated connection is (a partition without resets is bounded by the pool's
/// acquire timeout instead).
const PING_TIMEOUT: Duration = Duration::from_secs(3);

/// The outage layer's state: the app, and whether Postgres is down right now.
#[derive(Clone)]
pub struct OutageGuard {
    state: AppState,
    database_down: watch::Receiver<bool>,
}

impl OutageGuard {
    /// Starts the database watcher (until `shutdown`).
    pub fn start(state: AppState, shutdown: CancellationToken) -> Self {
        let (tx, rx) = watch::channel(false);
        let url = state.config.database_url.expose().to_string();
        tokio::spawn(watch_database(url, tx, shutdown));
        OutageGuard {
            state,
            database_down: rx,
        }
    }
}

async fn watch_database(url: String, down: watch::Sender<bool>, shutdown: CancellationToken) {
    let Ok(options) = PgConnectOptions::from_str(&url) else {
        return;
    };
    let mut conn: Option<PgConnection> = None;
    while !shutdown.is_cancelled() {
        let healthy = match conn.as_mut() {
            Some(c) => match tokio::time::timeout(PING_TIMEOUT, c.ping()).await {
                Ok(Ok(())) => true,
                Ok(Err(e)) => !is_database_outage(&e),
                Err(_) => {
                    conn = None;
                    !*down.borrow()
                }
            },
            None => match tokio::time::timeout(PING_TIMEOUT, options.connect()).await {
                Ok(Ok(c)) => {
                    conn = Some(c);
                    true
                }
                Ok(Err(e)) => !is_database_outage(&e),
                Err(_) => !*down.borrow(),
            },
        };
        if !healthy {
            conn = None;
        }
        down.send_if_modified(|was_down| {
            let changed = *was_down == healthy;
            if changed {
                if healthy {
                    tracing::info!("postgres reachable again");
                } else {
                    tracing::warn!("postgres unreachable: answering 503 until it is back");
                }
            }
            *was_down = !healthy;
            changed
        });
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(WATCH_EVERY) => {}
        }
    }
}

/// Routes that answer without Postgres, or report its state themselves.
fn exempt(path: &str) -> bool {
    matches!(
        path,
        "/health" | "/health/ready" | "/metrics" | "/openapi.json"
    )
}

fn database_unavailable() -> Response {
    AppError::Unavailable(DATABASE_UNAVAILABLE.into()).into_response()
}

pub async fn unavailable_when_down(
    State(guard): State<OutageGuard>,
    request: Request,
    next: Next,
) -> Response {
    if exempt(request.uri().path()) {
        return next.run(request).await;
    }
    let mut down = guard.database_down.clone();
    if *down.borrow_and_update() {
        // Its unread body is finished by the layer outside (unread.rs), so the
        // connection stays usable for the client's retry.
        return database_unavailable();
    }
    // The watcher ends at shutdown: requests draining then must finish, not be refused.
    let outage = async move {
        if down.wait_for(|d| *d).await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let response = tokio::select! {
        response = next.run(request) => response,
        _ = outage => return database_unavailable(),
    };
    let state = &guard.state;
    if response.status() != StatusCode::INTERNAL_SERVER_ERROR {
        return response;
    }
    let (postgres, redis) = tokio::join!(postgres_reachable(state), redis_reachable(state));
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
