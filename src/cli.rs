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
    /// The command-line client for API users: upload, download, list, watch, verify
    /// against a Chronicle server with an API key (docs/cli.md).
    Client(crate::client::ClientArgs),
}

#[derive(Subcommand)]
enum ProjectionsCommand {
    /// Each projector's checkpoint, lag, and the events it parked or is retrying.
    Status,
    /// Replay from event zero into fresh tables and swap them in atomically.
    Rebuild {
        /// Projector name (see `status`).
        name: Option<String>,
        /// Rebuild every projector.
        #[arg(long, conflicts_with = "name")]
        all: bool,
    },
    /// Apply parked events again (after fixing their cause); those that still fail stay
    /// parked. Exit 1 if any is still parked.
    RetryParked {
        /// Projector name (see `status`).
        name: Option<String>,
        /// Every projector.
        #[arg(long, conflicts_with = "name")]
        all: bool,
    },
}

/// The projectors a `rebuild` or `retry-parked` names; `Err` is the exit code of a usage
/// error (already explained on stderr).
fn targets(
    name: Option<String>,
    all: bool,
) -> Result<Vec<std::sync::Arc<dyn projections::Projector>>, ExitCode> {
    match (name, all) {
        (_, true) => Ok(projections::all()),
        (Some(name), false) => match projections::by_name(&name) {
            Some(p) => Ok(vec![p]),
            None => {
                eprintln!("unknown projector {name:?}; see `chronicle projections status`");
                Err(ExitCode::from(2))
            }
        },
        (None, false) => {
            eprintln!("name a projector or pass --all");
            Err(ExitCode::from(2))
        }
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The client needs none of the server's configuration (nor its database).
    let cli = match cli.command {
        Command::Client(args) => return crate::client::main(args),
        command => Cli { command },
    };
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
    let endpoints = db::Endpoints::from_config(&config);
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
            if config.event_signing.key_generated {
                tracing::warn!(
                    "EVENT_SIGNING_KEY is not set: commits are signed with a random key for \
                     this process only; verify cannot tell who wrote an event"
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
            endpoints.migrate().await?;
            println!("database migrated");
            Ok(ExitCode::SUCCESS)
        }
        Command::Projections { command } => {
            endpoints.migrate().await?;
            let pool = endpoints.pool(DbRole::Worker, 2).await?;
            projections::runtime::register(&pool, &projections::all()).await?;
            match command {
                ProjectionsCommand::Status => {
                    print_status(&pool).await?;
                    Ok(ExitCode::SUCCESS)
                }
                ProjectionsCommand::Rebuild { name, all } => {
                    let targets = match targets(name, all) {
                        Ok(t) => t,
                        Err(code) => return Ok(code),
                    };
                    for p in targets {
                        let report = projections::rebuild::rebuild(&pool, p).await?;
                        println!(
                            "rebuilt {} from {} events, {} parked",
                            report.projector,
                            report.events,
                            report.parked.len()
                        );
                        for parked in &report.parked {
                            let e = &parked.event;
                            println!(
                                "  parked position {} ({} {} {}, tenant {}): {}",
                                e.position.global_position,
                                e.aggregate_type,
                                e.aggregate_id,
                                e.event_type,
                                e.tenant_id,
                                parked.error
                            );
                        }
                    }
                    Ok(ExitCode::SUCCESS)
                }
                ProjectionsCommand::RetryParked { name, all } => {
                    let targets = match targets(name, all) {
                        Ok(t) => t,
                        Err(code) => return Ok(code),
                    };
                    let mut still_parked = 0;
                    for p in targets {
                        let report = projections::retry::retry_parked(&pool, p).await?;
                        println!(
                            "{}: {} applied, {} still parked",
                            report.projector,
                            report.applied(),
                            report.still_parked()
                        );
                        for r in &report.events {
                            let position = r.event.position.global_position;
                            match &r.error {
                                None if r.later_in_stream > 0 => println!(
                                    "  applied position {position}; {} later events of its stream \
                                     were applied before it: if they depend on it, run \
                                     `chronicle projections rebuild {}`",
                                    r.later_in_stream, report.projector
                                ),
                                None => println!("  applied position {position}"),
                                Some(error) => {
                                    println!("  still parked position {position}: {error}")
                                }
                            }
                        }
                        still_parked += report.still_parked();
                    }
                    Ok(if still_parked == 0 {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    })
                }
            }
        }
        Command::Audit { command } => crate::audit_tools::run(command, &config).await,
        Command::Bench { command } => {
            crate::bench::run(command, &config).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Client(_) => {
            unreachable!("the client is dispatched before the server configuration is read")
        }
    }
}

/// The status table, then every parked or failing event: a projection with parked events
/// says so next to its lag.
async fn print_status(pool: &sqlx::PgPool) -> anyhow::Result<()> {
    println!(
        "{:<16} {:>14} {:>14} {:>10} {:>10} {:>8} {:>8}",
        "projector", "position", "processed", "lag", "lag_s", "failing", "parked"
    );
    for s in projections::status::status(pool).await? {
        let note = if s.parked_events > 0 {
            "  (lag excludes parked events)"
        } else {
            ""
        };
        println!(
            "{:<16} {:>14} {:>14} {:>10} {:>10.1} {:>8} {:>8}{note}",
            s.name,
            s.last_position,
            s.events_processed,
            s.lag_events,
            s.lag_seconds,
            s.failing_events,
            s.parked_events
        );
    }
    let failures = projections::failures::list(pool, None).await?;
    if !failures.is_empty() {
        println!();
        println!("events not applied (`chronicle projections retry-parked` after a fix):");
        for f in failures {
            println!(
                "  {} {} position {} ({} {} {}, tenant {}), {} attempts, last {}: {}",
                f.projector,
                f.state,
                f.global_position,
                f.aggregate_type,
                f.aggregate_id,
                f.event_type,
                f.tenant_id,
                f.attempts,
                f.last_failed_at.to_rfc3339(),
                f.error
            );
        }
    }
    Ok(())
}
