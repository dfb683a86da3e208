//! Liveness and readiness: `/health` does no I/O; `/health/ready` checks
//! every dependency a request may need and names the ones that failed.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use crate::error::{AppError, ErrorBody};
use crate::projections::{self, failures::FailureCounts};
use crate::state::AppState;

const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    pub status: &'static str,
    /// Readiness only: projectors with events they could not apply (parked, or being
    /// retried). Informational: a parked event is a data problem for an operator
    /// (`chronicle projections status`), not a reason to take this instance out of a
    /// load balancer, so readiness stays 200.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub projection_failures: Option<Vec<FailureCounts>>,
}

/// Liveness: the process is up. No I/O.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, description = "alive", body = Health)))]
pub async fn health() -> Json<Health> {
    Json(Health {
        status: "ok",
        projection_failures: None,
    })
}

/// Readiness: Postgres, Redis and storage reachable. The body lists projectors with
/// parked or retrying events (`projection_failures`, empty when none) without failing
/// readiness.
#[utoipa::path(get, path = "/health/ready", tag = "operations",
    responses(
        (status = 200, description = "ready", body = Health),
        (status = 503, description = "a dependency is unreachable; the message names it", body = ErrorBody)))]
pub async fn ready(State(state): State<AppState>) -> Result<Json<Health>, AppError> {
    let (pg, redis, storage) = tokio::join!(
        check_postgres(&state),
        check_redis(&state),
        check_storage(&state)
    );
    let failed: Vec<&str> = [("postgres", pg), ("redis", redis), ("storage", storage)]
        .into_iter()
        .filter_map(|(name, result)| match result {
            Ok(()) => None,
            Err(err) => {
                tracing::warn!(dependency = name, error = %err, "readiness check failed");
                Some(name)
            }
        })
        .collect();
    if failed.is_empty() {
        // Best effort: Postgres just answered; if this fails, the detail is left out.
        let projection_failures =
            tokio::time::timeout(PROBE_TIMEOUT, projections::failures::counts(&state.db))
                .await
                .ok()
                .and_then(Result::ok);
        Ok(Json(Health {
            status: "ready",
            projection_failures,
        }))
    } else {
        Err(AppError::Unavailable(format!(
            "not ready: {} unreachable",
            failed.join(", ")
        )))
    }
}

async fn check_postgres(state: &AppState) -> anyhow::Result<()> {
    tokio::time::timeout(PROBE_TIMEOUT, sqlx::query("SELECT 1").execute(&state.db)).await??;
    Ok(())
}

async fn check_redis(state: &AppState) -> anyhow::Result<()> {
    tokio::time::timeout(PROBE_TIMEOUT, async {
        let mut conn = state.redis.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await?;
        Ok::<_, redis::RedisError>(())
    })
    .await??;
    Ok(())
}

async fn check_storage(state: &AppState) -> anyhow::Result<()> {
    tokio::time::timeout(PROBE_TIMEOUT, state.storage.ping()).await??;
    Ok(())
}
