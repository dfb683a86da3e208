//! Postgres: create the database when missing, migrate it, and open the pools.
//! The owner (DATABASE_URL's user) only migrates; the API runs as `chronicle_app` and the
//! worker as `chronicle_worker` (see migrations/0001_roles.sql), so row-level security
//! applies to every query the service runs.
//!
//! Directly connected, a pool switches to its role with `SET ROLE` once per connection.
//! Behind a transaction pooler that would be session state left on whichever server
//! connection ran it, so there (`Endpoints` with `Pooler::Transaction`) a pool logs in as
//! its role and sets nothing: a connection's only per-transaction state is what
//! `SET LOCAL`/`set_config(…, true)` sets inside its transaction (docs/deployment.md,
//! "Connection pooling").

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};

use crate::config::{Config, Pooler};

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
    pub fn role_name(self) -> Option<&'static str> {
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
    open(
        connect_options(url)?,
        role,
        max_connections,
        acquire_timeout,
    )
    .await
}

/// The pool itself. `SET ROLE` only when the login is not the role already (a login as
/// the role itself is how pools connect through a transaction pooler).
async fn open(
    options: PgConnectOptions,
    role: DbRole,
    max_connections: u32,
    acquire_timeout: Duration,
) -> anyhow::Result<PgPool> {
    let switch_to = role
        .role_name()
        .filter(|name| options.get_username() != *name);
    PgPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(0)
        .acquire_timeout(acquire_timeout)
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                if let Some(role) = switch_to {
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

/// Where each kind of connection goes: pools to `DATABASE_URL` (perhaps a pooler),
/// migrations and LISTEN to the direct URL.
#[derive(Debug, Clone)]
pub struct Endpoints {
    url: String,
    direct: Option<String>,
    pooler: Pooler,
}

impl Endpoints {
    pub fn new(url: impl Into<String>, direct: Option<String>, pooler: Pooler) -> Self {
        Self {
            url: url.into(),
            direct,
            pooler,
        }
    }

    pub fn from_config(config: &Config) -> Self {
        Self::new(
            config.database_url.expose(),
            config
                .database_direct_url
                .as_ref()
                .map(|u| u.expose().to_string()),
            config.database_pooler,
        )
    }

    /// A session of the owner: migrations, LISTEN, `CREATE DATABASE`.
    pub fn direct(&self) -> &str {
        self.direct.as_deref().unwrap_or(&self.url)
    }

    /// Creates and migrates the database over the direct URL. Behind a transaction
    /// pooler the runtime roles log in themselves, so they are given `LOGIN` here (their
    /// passwords, if the pooler or Postgres asks for any, are the operator's business).
    pub async fn migrate(&self) -> anyhow::Result<()> {
        migrate(self.direct()).await?;
        if self.pooler == Pooler::Transaction {
            allow_role_logins(self.direct()).await?;
        }
        Ok(())
    }

    /// A pool running as `role`; background work may wait 5 s for a connection.
    pub async fn pool(&self, role: DbRole, max_connections: u32) -> anyhow::Result<PgPool> {
        self.pool_with_acquire_timeout(role, max_connections, Duration::from_secs(5))
            .await
    }

    /// A pool running as `role` whose callers wait at most `acquire_timeout`.
    pub async fn pool_with_acquire_timeout(
        &self,
        role: DbRole,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> anyhow::Result<PgPool> {
        let mut options = connect_options(&self.url)?;
        if let (Pooler::Transaction, Some(name)) = (self.pooler, role.role_name()) {
            // The URL's password, if any, is kept: the pooler's user list (or
            // auth_query) and Postgres decide whether the role's login needs another.
            options = options.username(name);
        }
        open(options, role, max_connections, acquire_timeout).await
    }
}

/// Gives the runtime roles `LOGIN` (idempotent). Roles are cluster-wide and several
/// databases may migrate at once: a concurrent `ALTER ROLE` of the same role fails with
/// "tuple concurrently updated", so it is tried again.
async fn allow_role_logins(url: &str) -> anyhow::Result<()> {
    let mut conn = connect_options(url)?
        .connect()
        .await
        .context("cannot reach Postgres (DATABASE_DIRECT_URL)")?;
    for role in [DbRole::App, DbRole::Worker]
        .into_iter()
        .filter_map(DbRole::role_name)
    {
        for attempt in 0.. {
            let can_login: bool =
                sqlx::query_scalar("SELECT rolcanlogin FROM pg_roles WHERE rolname = $1")
                    .bind(role)
                    .fetch_one(&mut conn)
                    .await?;
            if can_login {
                break;
            }
            match sqlx::query(&format!("ALTER ROLE {role} LOGIN"))
                .execute(&mut conn)
                .await
            {
                Ok(_) => break,
                Err(e) if attempt < 5 => {
                    tracing::debug!(error = %e, role, "ALTER ROLE raced; trying again");
                    tokio::time::sleep(Duration::from_millis(20 * (attempt + 1))).await;
                }
                Err(e) => return Err(e).context("cannot give the runtime roles LOGIN"),
            }
        }
    }
    Ok(())
}
