//! Postgres: create the database when missing, migrate it, and open the pools.
//! The owner (DATABASE_URL's user) only migrates; the API runs as `chronicle_app` and the
//! worker as `chronicle_worker` (see migrations/0001_roles.sql), so row-level security
//! applies to every query the service runs.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};

/// The runtime roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbRole {
    /// Reads read tables under RLS, appends events.
    App,
    /// Projectors and background work: writes read tables for every tenant.
    Worker,
    /// The connecting user itself: migrations and admin CLI only.
    Owner,
}

impl DbRole {
    fn role_name(self) -> Option<&'static str> {
        match self {
            DbRole::App => Some("chronicle_app"),
            DbRole::Worker => Some("chronicle_worker"),
            DbRole::Owner => None,
        }
    }
}

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

fn connect_options(url: &str) -> anyhow::Result<PgConnectOptions> {
    Ok(PgConnectOptions::from_str(url)
        .context("DATABASE_URL is not a valid Postgres URL")?
        .log_statements(tracing::log::LevelFilter::Trace)
        .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1)))
}

/// Creates the database named in `url` if it does not exist. Safe to race.
pub async fn ensure_database(url: &str) -> anyhow::Result<()> {
    let options = connect_options(url)?;
    let name = options.get_database().unwrap_or("postgres").to_string();
    let admin = options.clone().database("postgres");
    let mut conn = admin
        .connect()
        .await
        .context("cannot reach Postgres (DATABASE_URL)")?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut conn)
            .await?;
    if !exists {
        let sql = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
        match sqlx::query(&sql).execute(&mut conn).await {
            Ok(_) => tracing::info!(database = %name, "created database"),
            // Another instance created it first.
            Err(sqlx::Error::Database(e))
                if matches!(e.code().as_deref(), Some("42P04") | Some("23505")) => {}
            Err(e) => return Err(e).context("CREATE DATABASE failed"),
        }
    }
    Ok(())
}

/// Creates (if needed) and migrates the database. Migrations take an advisory lock, so
/// several instances starting at once migrate once.
pub async fn migrate(url: &str) -> anyhow::Result<()> {
    ensure_database(url).await?;
    let pool = pool(url, DbRole::Owner, 2).await?;
    MIGRATOR.run(&pool).await.context("migration failed")?;
    pool.close().await;
    Ok(())
}

/// A pool whose every connection runs as `role`; background work may wait 5 s for a
/// connection.
pub async fn pool(url: &str, role: DbRole, max_connections: u32) -> anyhow::Result<PgPool> {
    pool_with_acquire_timeout(url, role, max_connections, Duration::from_secs(5)).await
}

/// A pool whose callers wait at most `acquire_timeout` for a connection, connecting
/// included: the API's pool uses `DB_ACQUIRE_TIMEOUT_MS`, so while Postgres is down a
/// request fails within it (`PoolTimedOut`, answered `503`) instead of hanging.
pub async fn pool_with_acquire_timeout(
    url: &str,
    role: DbRole,
    max_connections: u32,
    acquire_timeout: Duration,
) -> anyhow::Result<PgPool> {
    let options = connect_options(url)?;
    PgPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(0)
        .acquire_timeout(acquire_timeout)
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                if let Some(role) = role.role_name() {
                    sqlx::query(&format!("SET ROLE {role}"))
                        .execute(&mut *conn)
                        .await?;
                }
                Ok(())
            })
        })
        .connect_with(options)
        .await
        .context("cannot connect to Postgres (DATABASE_URL)")
}
