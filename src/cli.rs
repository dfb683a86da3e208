//! The command line: `serve | web | worker | migrate | projections … | audit … | bench …`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::app::{App, Mode, cancel_on_signal};
use crate::config::{Config, Environment};
use crate::db::{self, DbRole};
use crate::projections;

#[derive(Parser)]
#[command(name = "chronicle", version, about = "Event-sourced file backend")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// HTTP API + worker + projectors in one process (IS_WORKER=true: worker only).
    Serve,
    /// HTTP API only.
    Web,
    /// Worker + projectors only.
    Worker,
    /// Create the database if missing and apply migrations.
    Migrate,
    /// Inspect or rebuild projections.
    Projections {
        #[command(subcommand)]
        command: ProjectionsCommand,
    },
    /// Auditor tools.
    Audit {
        #[command(subcommand)]
        command: crate::audit_tools::AuditCommand,
    },
    /// Benchmarks against the local Postgres (figures in docs/benchmarks.md).
    Bench {
        #[command(subcommand)]
        command: crate::bench::BenchCommand,
    },
}

#[derive(Subcommand)]
enum ProjectionsCommand {
    /// Each projector's checkpoint and lag.
    Status,
    /// Replay from event zero into fresh tables and swap them in atomically.
    Rebuild {
        /// Projector name (see `status`).
        name: Option<String>,
        /// Rebuild every projector.
        #[arg(long, conflicts_with = "name")]
        all: bool,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::from(2);
        }
    };
    crate::telemetry::init(config.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, config)) {
        Ok(code) => code,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "chronicle failed");
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: Config) -> anyhow::Result<ExitCode> {
    let url = config.database_url.expose().to_string();
    match command {
        Command::Serve | Command::Web | Command::Worker => {
            let mode = match command {
                Command::Serve if config.is_worker => Mode::Worker,
                Command::Serve => Mode::Serve,
                Command::Web => Mode::Web,
                _ => Mode::Worker,
            };
            if config.jwt_secret_generated {
                tracing::warn!(
                    "JWT_SECRET is not set: using a random secret for this process only; \
                     tokens will not survive a restart or work across instances"
                );
            }
            if config.checkpoints.key_generated {
                tracing::warn!(
                    "CHECKPOINT_SIGNING_KEY is not set: checkpoints are signed with a random \
                     key for this process only; auditors cannot check them"
                );
            }
            if config.environment != Environment::Production && config.frontend_url.is_none() {
                tracing::info!("FRONTEND_URL is not set: no cross-origin requests are allowed");
            }
            let app = App::start(config, mode).await?;
            if let Some(addr) = app.addr {
                println!("chronicle listening on http://{addr}");
            }
            cancel_on_signal(app.shutdown_token());
            app.wait().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate => {
            db::migrate(&url).await?;
            println!("database migrated");
            Ok(ExitCode::SUCCESS)
        }
        Command::Projections { command } => {
            db::migrate(&url).await?;
            let pool = db::pool(&url, DbRole::Worker, 2).await?;
            projections::runtime::register(&pool, &projections::all()).await?;
            match command {
                ProjectionsCommand::Status => {
                    println!(
                        "{:<16} {:>14} {:>14} {:>10} {:>10}",
                        "projector", "position", "processed", "lag", "lag_s"
                    );
                    for s in projections::status::status(&pool).await? {
                        println!(
                            "{:<16} {:>14} {:>14} {:>10} {:>10.1}",
                            s.name,
                            s.last_position,
                            s.events_processed,
                            s.lag_events,
                            s.lag_seconds
                        );
                    }
                    Ok(ExitCode::SUCCESS)
                }
                ProjectionsCommand::Rebuild { name, all } => {
                    let targets = match (name, all) {
                        (_, true) => projections::all(),
                        (Some(name), false) => match projections::by_name(&name) {
                            Some(p) => vec![p],
                            None => {
                                eprintln!(
                                    "unknown projector {name:?}; see `chronicle projections status`"
                                );
                                return Ok(ExitCode::from(2));
                            }
                        },
                        (None, false) => {
                            eprintln!("name a projector or pass --all");
                            return Ok(ExitCode::from(2));
                        }
                    };
                    for p in targets {
                        let report = projections::rebuild::rebuild(&pool, p).await?;
                        println!("rebuilt {} from {} events", report.projector, report.events);
                    }
                    Ok(ExitCode::SUCCESS)
                }
            }
        }
        Command::Audit { command } => crate::audit_tools::run(command, &config).await,
        Command::Bench { command } => {
            crate::bench::run(command, &config).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
