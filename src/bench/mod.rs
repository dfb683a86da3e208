//! Benchmarks (`chronicle bench …`). Figures go in docs/benchmarks.md.

use clap::Subcommand;

use crate::config::Config;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Event store: appends, command throughput, loads, projector catch-up.
    Store,
}

pub async fn run(command: BenchCommand, _config: &Config) -> anyhow::Result<()> {
    match command {
        BenchCommand::Store => anyhow::bail!("not yet implemented"),
    }
}
