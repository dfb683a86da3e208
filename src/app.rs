//! Building, running and stopping Chronicle. `main` and the tests start the same app;
//! tests bind port 0 and read the address back.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::db::{self, DbRole};
use crate::live::LiveHub;
use crate::media::MediaLimits;
use crate::metrics::Metrics;
use crate::projections;
use crate::queue::Queue;
use crate::ratelimit::{self, RateLimiter};
use crate::state::AppState;
use crate::storage::Storage;
use crate::store::EventLog;
use crate::worker::Worker;

/// Which parts of Chronicle this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// HTTP API + worker + projectors (the zero-setup default).
    Serve,
    /// HTTP API only.
    Web,
    /// Worker + projectors only.
    Worker,
}

impl Mode {
    fn runs_http(self) -> bool {
        matches!(self, Mode::Serve | Mode::Web)
    }
    fn runs_worker(self) -> bool {
        matches!(self, Mode::Serve | Mode::Worker)
    }
}

/// A running Chronicle.
pub struct App {
    /// Where the HTTP API listens (None in worker mode).
    pub addr: Option<SocketAddr>,
    pub state: AppState,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl App {
    /// Migrates the database (creating it if missing), opens pools, binds the listener
    /// and starts the parts `mode` asks for.
    pub async fn start(config: Config, mode: Mode) -> anyhow::Result<App> {
        let endpoints = db::Endpoints::from_config(&config);
        endpoints.migrate().await?;
        tokio::fs::create_dir_all(&config.data_dir)
            .await
            .with_context(|| format!("DATA_DIR {} cannot be created", config.data_dir.display()))?;

        let app_pool = endpoints
            .pool_with_acquire_timeout(
                DbRole::App,
                config.db_max_connections,
                config.outages.db_acquire_timeout,
            )
            .await?;
        let redis =
            redis::Client::open(config.redis_url.expose()).context("REDIS_URL is invalid")?;
        let redis_conn = ratelimit::connection_manager(config.redis_url.expose())
            .context("REDIS_URL is invalid")?;
        warm_up_redis(redis_conn.clone());
        let limiter = RateLimiter::new(redis_conn.clone(), &config.redis_key_prefix);
        let config = Arc::new(config);
        let metrics = Arc::new(Metrics::new());
        let shutdown = CancellationToken::new();
        let reads = crate::replicas::Replicas::open(
            app_pool.clone(),
            &config.scale,
            "chronicle_app",
            config.db_max_connections,
            metrics.clone(),
        )?;
        // Standing changes are announced through Redis before they commit, and requests
        // answer from memory only under an unchanged epoch (docs/auth-cache.md).
        let epochs = crate::cache::standing::StandingEpochs::new(
            redis_conn.clone(),
            &config.redis_key_prefix,
        );
        let state = AppState::new(crate::state::Services {
            config: config.clone(),
            reads,
            events: EventLog::new(app_pool.clone())
                .with_counter(metrics.events_appended.clone())
                .signed_by(config.event_signing.key.clone())
                .announcing_to(epochs.clone()),
            standings: crate::auth::Standings::new(epochs),
            db: app_pool,
            redis,
            redis_conn: redis_conn.clone(),
            dispatch: crate::queue::Dispatch::new(Queue::new(
                redis_conn.clone(),
                &config.redis_key_prefix,
            )),
            limiter,
            metrics: metrics.clone(),
            tokens: crate::auth::TokenKeys::new(config.jwt_secret.expose()),
            csrf: crate::auth::browser::CsrfKey::new(config.jwt_secret.expose()),
            storage: Storage::open(&config.storage).context("storage cannot be opened")?,
            live: LiveHub::with_counters(
                shutdown.clone(),
                metrics.live_subscriptions.clone(),
                metrics.live_pings.clone(),
            ),
            file_cache: crate::cache::FileCache::new(
                redis_conn.clone(),
                &config.redis_key_prefix,
                config.file_cache_ttl,
                metrics.clone(),
            ),
            listings: crate::cache::listing::ListingCache::new(
                crate::cache::listing::epochs(redis_conn.clone(), &config.redis_key_prefix),
                metrics.clone(),
            ),
        });
        let mut tasks = Vec::new();

        if mode.runs_worker() {
            let worker_pool = endpoints.pool(DbRole::Worker, 4).await?;
            if let Some(path) = &config.geoip_db {
                // The `devices` projector takes a `GeoLookup`; no file reader ships yet.
                tracing::warn!(path = %path.display(), "GEOIP_DB is set but this build has no GeoIP reader; locations.geo_json stays NULL");
            }
            let all = projections::live(projections::Reactions {
                redis: state.redis_conn.clone(),
                key_prefix: config.redis_key_prefix.clone(),
            });
            projections::runtime::register(&worker_pool, &all).await?;
            // LISTEN is session state: it needs a direct connection.
            let listen_url = endpoints.direct().to_string();
            let worker = Arc::new(Worker {
                db: worker_pool.clone(),
                events: state.events.clone(),
                snapshot_every: config.snapshot_every,
                storage: state.storage.clone(),
                scanner: config
                    .scan
                    .build()
                    .context("virus scanner cannot be set up")?,
                queue: Queue::new(state.redis_conn.clone(), &config.redis_key_prefix),
                redis_url: config.redis_url.expose().to_string(),
                settings: config.jobs.clone(),
                media: MediaLimits::default(),
                optimising: Arc::new(tokio::sync::Semaphore::new(crate::config::cores())),
                redis: state.redis_conn.clone(),
                key_prefix: config.redis_key_prefix.clone(),
                uploads: config.tus.clone(),
            });
            tasks.extend(worker.spawn(shutdown.clone()));
            tasks.push(tokio::spawn(crate::store::checkpointer::run_periodically(
                worker_pool.clone(),
                crate::store::checkpointer::Checkpointer::from_config(&config),
                config.checkpoints.every,
                shutdown.clone(),
            )));
            // The transparency log's Merkle trees and signed heads (src/transparency).
            tasks.push(tokio::spawn(crate::transparency::builder::run(
                worker_pool.clone(),
                config.checkpoints.key.clone(),
                config.transparency.clone(),
                shutdown.clone(),
            )));
            // Webhook deliveries (src/webhooks): a pool of their own, since each delivery in
            // flight holds a connection (its endpoint's lease) for up to the timeout.
            if config.webhooks.concurrency > 0 {
                let pool = endpoints
                    .pool(DbRole::Worker, config.webhooks.concurrency as u32 + 1)
                    .await?;
                let dispatcher = crate::worker::webhooks::Dispatcher::new(
                    pool,
                    state.events.clone(),
                    config.snapshot_every,
                    config.webhooks.clone(),
                )
                .context("webhook HTTP client cannot be set up")?;
                tasks.extend(Arc::new(dispatcher).spawn(shutdown.clone()));
            }
            // Projectors get a pool of their own, one connection each: every batch holds
            // its connection for the whole transaction, and sharing the worker's few made
            // them queue behind each other and the jobs (a small file waits for two of
            // them: `jobs` to dispatch it, `files` to show it `completed`).
            let projector_pool = endpoints.pool(DbRole::Worker, all.len() as u32 + 1).await?;
            tasks.extend(projections::runtime::spawn_all(
                projector_pool,
                listen_url,
                all,
                config.projectors.clone(),
                shutdown.clone(),
            ));
        }

        let mut addr = None;
        if mode.runs_http() {
            let listener = tokio::net::TcpListener::bind(config.bind_addr)
                .await
                .with_context(|| format!("BIND_ADDR {} cannot be bound", config.bind_addr))?;
            addr = Some(listener.local_addr()?);
            tasks.extend(state.reads.spawn_monitor(shutdown.clone()));
            // One shared Redis subscription feeds this instance's SSE clients.
            tasks.push(tokio::spawn(state.live.clone().run(
                state.redis.clone(),
                config.redis_key_prefix.clone(),
                config.outages.live_ping_every,
            )));
            // The JSON API and the web console at `/` (src/console), one router.
            let router = crate::api::router_with(state.clone(), crate::console::routes(&state));
            let (stop, header_timeout) = (shutdown.clone(), config.http_header_timeout);
            tasks.push(tokio::spawn(crate::api::serve::serve(
                listener,
                router,
                header_timeout,
                stop,
            )));
        }
        tracing::info!(?mode, addr = ?addr, "chronicle started");
        Ok(App {
            addr,
            state,
            shutdown,
            tasks,
        })
    }

    /// The token that stops everything; cancel it to shut down.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits until shutdown is requested and every part has finished its in-flight work.
    pub async fn wait(self) {
        for task in self.tasks {
            let _ = task.await;
        }
        self.state.db.close().await;
    }

    /// Requests shutdown and waits for it.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.wait().await;
    }
}

/// Connects the lazy Redis connection in the background, so the first requests do not pay
/// for the handshake (TLS included) and an unreachable Redis is reported at start-up
/// without delaying it.
fn warm_up_redis(mut conn: redis::aio::ConnectionManager) {
    tokio::spawn(async move {
        if let Err(err) = redis::cmd("PING").query_async::<String>(&mut conn).await {
            tracing::warn!(error = %err, "Redis unreachable at start-up; readiness reports it, rate limits use their fallback");
        }
    });
}

/// Cancels `token` on Ctrl-C or SIGTERM.
pub fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {}
            _ = terminate => {}
        }
        tracing::info!("shutdown requested; finishing in-flight work");
        token.cancel();
    });
}
