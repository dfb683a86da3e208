//! Reads of the `analytics` views (docs/schema.md, "Views") for the caller's tenant, in
//! the shapes the charts draw: one array per series, days as Unix seconds (UTC
//! midnight), as uPlot takes them. Each read runs in a transaction pinned to the tenant
//! (row-level security under the views) and filters by the tenant as well.

use serde::Serialize;
use sqlx::{FromRow, PgConnection};

use crate::auth::TenantContext;
use crate::error::AppError;
use crate::state::AppState;

/// The tenant's stored bytes and what deduplication saves (`storage_by_tenant`,
/// `dedup_savings`).
#[derive(Debug, Default, Serialize, FromRow)]
pub struct Totals {
    pub files: i64,
    pub versions: i64,
    pub blobs: i64,
    pub logical_bytes: i64,
    pub physical_bytes: i64,
    pub deleted_bytes: i64,
    pub saved_bytes: i64,
    pub saved_ratio: f64,
}

/// Storage per file owner, largest first.
#[derive(Debug, Default, Serialize)]
pub struct PerUser {
    pub handles: Vec<String>,
    pub logical_bytes: Vec<i64>,
    pub deleted_bytes: Vec<i64>,
}

#[derive(Debug, Default, Serialize)]
pub struct Uploads {
    pub days: Vec<i64>,
    pub uploads: Vec<i64>,
    pub virus_detections: Vec<i64>,
}

#[derive(Debug, Default, Serialize)]
pub struct Latency {
    pub days: Vec<i64>,
    pub p50: Vec<f64>,
    pub p90: Vec<f64>,
    pub p99: Vec<f64>,
}

#[derive(Debug, Default, Serialize)]
pub struct DeadLetters {
    pub days: Vec<i64>,
    pub dead_letters: Vec<i64>,
}

/// Everything the analytics page draws.
#[derive(Debug, Default, Serialize)]
pub struct Analytics {
    pub totals: Totals,
    pub storage_by_user: PerUser,
    pub uploads_daily: Uploads,
    pub latency_daily: Latency,
    pub dead_letters_daily: DeadLetters,
}

/// The most owners the per-user chart shows, and the most days the daily charts show.
const TOP_USERS: i64 = 20;
const DAYS: i32 = 90;

pub async fn read(state: &AppState, ctx: &TenantContext) -> Result<Analytics, AppError> {
    let mut tx = ctx.begin(&state.db).await?;
    let tenant = ctx.tenant_id.0;
    let totals = totals(&mut tx, tenant).await?;

    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT coalesce(u.handle, s.user_id::text), s.logical_bytes::bigint, s.deleted_bytes::bigint
           FROM analytics.storage_by_user s
           LEFT JOIN users u ON u.tenant_id = s.tenant_id AND u.id = s.user_id
          WHERE s.tenant_id = $1
          ORDER BY s.logical_bytes DESC, 1 LIMIT $2",
    )
    .bind(tenant)
    .bind(TOP_USERS)
    .fetch_all(&mut *tx)
    .await?;
    let mut storage_by_user = PerUser::default();
    for (handle, logical, deleted) in rows {
        storage_by_user.handles.push(handle);
        storage_by_user.logical_bytes.push(logical);
        storage_by_user.deleted_bytes.push(deleted);
    }

    let rows: Vec<(i64, i64, i64)> = sqlx::query_as(
        "SELECT extract(epoch FROM day)::bigint, uploads::bigint, virus_detections::bigint
           FROM analytics.uploads_daily
          WHERE tenant_id = $1 AND day > current_date - $2
          ORDER BY day",
    )
    .bind(tenant)
    .bind(DAYS)
    .fetch_all(&mut *tx)
    .await?;
    let mut uploads_daily = Uploads::default();
    for (day, uploads, viruses) in rows {
        uploads_daily.days.push(day);
        uploads_daily.uploads.push(uploads);
        uploads_daily.virus_detections.push(viruses);
    }

    let rows: Vec<(i64, f64, f64, f64)> = sqlx::query_as(
        "SELECT extract(epoch FROM day)::bigint, p50_seconds::float8, p90_seconds::float8,
                p99_seconds::float8
           FROM analytics.processing_latency_daily
          WHERE tenant_id = $1 AND day > current_date - $2
          ORDER BY day",
    )
    .bind(tenant)
    .bind(DAYS)
    .fetch_all(&mut *tx)
    .await?;
    let mut latency_daily = Latency::default();
    for (day, p50, p90, p99) in rows {
        latency_daily.days.push(day);
        latency_daily.p50.push(p50);
        latency_daily.p90.push(p90);
        latency_daily.p99.push(p99);
    }

    let rows: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT extract(epoch FROM day)::bigint, dead_letters::bigint
           FROM analytics.dead_letters_daily
          WHERE tenant_id = $1 AND day > current_date - $2
          ORDER BY day",
    )
    .bind(tenant)
    .bind(DAYS)
    .fetch_all(&mut *tx)
    .await?;
    let mut dead_letters_daily = DeadLetters::default();
    for (day, count) in rows {
        dead_letters_daily.days.push(day);
        dead_letters_daily.dead_letters.push(count);
    }
    tx.commit().await?;
    Ok(Analytics {
        totals,
        storage_by_user,
        uploads_daily,
        latency_daily,
        dead_letters_daily,
    })
}

async fn totals(conn: &mut PgConnection, tenant: uuid::Uuid) -> Result<Totals, AppError> {
    let totals = sqlx::query_as::<_, Totals>(
        "SELECT t.files::bigint, t.versions::bigint, coalesce(d.blobs, 0)::bigint AS blobs,
                t.logical_bytes::bigint, t.physical_bytes::bigint, t.deleted_bytes::bigint,
                coalesce(d.saved_bytes, 0)::bigint AS saved_bytes,
                coalesce(d.saved_ratio, 0)::float8 AS saved_ratio
           FROM analytics.storage_by_tenant t
           LEFT JOIN analytics.dedup_savings d USING (tenant_id)
          WHERE t.tenant_id = $1",
    )
    .bind(tenant)
    .fetch_optional(conn)
    .await?;
    Ok(totals.unwrap_or_default())
}
