//! Benchmarks (`chronicle bench …`). Figures go in docs/benchmarks.md; targets are
//! checked by reading the table, never by timed tests.

mod auth;
mod store;

use clap::Subcommand;

use crate::config::Config;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Event store: W1–W4, the plain-INSERT limit L1 and the cqrs-es baseline.
    Store,
    /// Accounts: login latency, authenticated request throughput, per-request auth cost.
    Auth,
}

pub async fn run(command: BenchCommand, config: &Config) -> anyhow::Result<()> {
    match command {
        BenchCommand::Store => {
            let rows = store::run(config.database_url.expose(), config.snapshot_every).await?;
            store::print(&rows);
        }
        BenchCommand::Auth => {
            let rows = auth::run(config.database_url.expose()).await?;
            store::print(&rows);
        }
    }
    Ok(())
}
