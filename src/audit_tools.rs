//! `chronicle audit …`: the auditor's command-line tools — verify the chains, signatures
//! and checkpoints, take a checkpoint now, print the public keys, export NDJSON, and
//! print one file's history readably. Exit codes: 0 fine, 1 the log is broken (verify),
//! something was left unsigned (checkpoint) or the file does not exist (history), 2 bad
//! usage or configuration.

use std::io::Write;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::Subcommand;
use futures::StreamExt;
use uuid::Uuid;

use crate::aggregates::file::File;
use crate::config::Config;
use crate::db::{self, DbRole};
use crate::ids::TenantId;
use crate::store::checkpointer::{Checkpointer, take_all};
use crate::store::export::{ExportFilter, ndjson};
use crate::store::history::{self, StoreEventLine, StreamRef};
use crate::store::trust::Trust;
use crate::store::verify::{VerifyReport, verify_log};
use crate::store::{ChronicleStore, EventLog};

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Recompute every stream's hash chain, check who signed it and each tenant's
    /// checkpoint chain, and report the unprotected window; exit 1 on any break.
    Verify {
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<Uuid>,
        /// Trust only the public keys in this file (`chronicle audit keys` writes one)
        /// instead of the configured ones.
        #[arg(long)]
        keys: Option<std::path::PathBuf>,
        /// The digest of a checkpoint recorded at an earlier audit: exit 1 if it is no
        /// longer in its tenant's checkpoint chain (a rollback). Repeatable.
        #[arg(long = "trusted-digest")]
        trusted_digests: Vec<String>,
    },
    /// Record a signed checkpoint of every tenant's chain heads now (the worker does
    /// this every CHECKPOINT_EVERY_SECS).
    Checkpoint {
        /// Also sign chains no trusted event key signed: once, after upgrading, to
        /// adopt the events written before Chronicle signed its commits.
        #[arg(long)]
        adopt_unsigned: bool,
    },
    /// Print the checkpoint public key (base64 of 32 bytes) for auditors.
    PublicKey,
    /// Print the trusted public keys (event and checkpoint) as the keys file that
    /// `verify --keys` and scripts/verify_export.py read.
    Keys,
    /// Write a tenant's events to stdout as NDJSON (one event per line, append order).
    Export {
        #[arg(long)]
        tenant: Uuid,
        /// Events recorded at or after this instant (RFC 3339).
        #[arg(long)]
        since: Option<DateTime<Utc>>,
        /// Events recorded before this instant (RFC 3339).
        #[arg(long)]
        until: Option<DateTime<Utc>>,
    },
    /// Print a file's events, one per line, then its state at the end.
    History {
        #[arg(long)]
        file: Uuid,
        /// Stop at this instant (RFC 3339): the state shown is the file's state then.
        #[arg(long)]
        as_of: Option<DateTime<Utc>>,
    },
    /// The transparency log: signed tree heads and Merkle proofs (docs/transparency.md).
    #[command(flatten)]
    Transparency(crate::transparency::cli::TransparencyCommand),
}

/// The exit code of a verify run: 0 intact, 1 anything broken.
pub fn verify_exit_code(report: &VerifyReport) -> ExitCode {
    if report.is_intact() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

pub async fn run(command: AuditCommand, config: &Config) -> anyhow::Result<ExitCode> {
    match command {
        AuditCommand::PublicKey => {
            if config.checkpoints.key_generated {
                eprintln!(
                    "CHECKPOINT_SIGNING_KEY is not set: there is no stable public key to give out"
                );
                return Ok(ExitCode::from(2));
            }
            println!("{}", config.checkpoints.key.public_base64());
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Verify {
            tenant,
            keys,
            trusted_digests,
        } => {
            let mut trust = match &keys {
                Some(path) => match std::fs::read_to_string(path)
                    .map_err(|e| e.to_string())
                    .and_then(|text| Trust::from_keys_file(&text))
                {
                    Ok(trust) => trust,
                    Err(why) => {
                        eprintln!("--keys {}: {why}", path.display());
                        return Ok(ExitCode::from(2));
                    }
                },
                None => Trust::from_config(config),
            };
            if let Some(bad) = trusted_digests
                .iter()
                .find(|d| !crate::store::trust::is_digest(d))
            {
                eprintln!("--trusted-digest {bad:?}: expected 64 lowercase hex characters");
                return Ok(ExitCode::from(2));
            }
            trust.pinned_digests = trusted_digests;
            if trust.checkpoint_keys.is_none() {
                eprintln!(
                    "warning: CHECKPOINT_SIGNING_KEY is not set; checkpoint signatures are \
                     checked against the key stored with each checkpoint only"
                );
            }
            if trust.event_keys.is_none() {
                eprintln!(
                    "warning: EVENT_SIGNING_KEY is not set; who wrote each event is not checked"
                );
            }
            let pool = open(config).await?;
            let report = verify_log(&pool, tenant.map(TenantId), &trust).await?;
            print_report(&report);
            Ok(verify_exit_code(&report))
        }
        AuditCommand::Keys => {
            let trust = Trust::from_config(config);
            if trust.event_keys.is_none() || trust.checkpoint_keys.is_none() {
                eprintln!(
                    "EVENT_SIGNING_KEY and CHECKPOINT_SIGNING_KEY must be set: a generated key \
                     is trusted by nobody"
                );
                return Ok(ExitCode::from(2));
            }
            println!("{}", serde_json::to_string_pretty(&trust.keys_file())?);
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Checkpoint { adopt_unsigned } => {
            if config.checkpoints.key_generated {
                eprintln!(
                    "CHECKPOINT_SIGNING_KEY is not set: a checkpoint signed by a throwaway key proves nothing"
                );
                return Ok(ExitCode::from(2));
            }
            let pool = open(config).await?;
            let mut checkpointer = Checkpointer::from_config(config);
            checkpointer.adopt_unsigned = adopt_unsigned;
            let round = take_all(&pool, &checkpointer).await?;
            for c in &round.taken {
                println!(
                    "checkpoint {} tenant {} (#{}): {} streams ({} changed), digest {}",
                    c.id, c.tenant_id, c.counter, c.streams, c.changed, c.digest
                );
            }
            for (tenant, why) in &round.refused {
                println!("REFUSED tenant {tenant}: {why}");
            }
            for (tenant, streams) in &round.unsigned {
                println!(
                    "NOT SIGNED tenant {tenant}: new events of {} streams do not verify or \
                     no trusted key signed them (first {}); run `chronicle audit verify`",
                    streams.len(),
                    streams[0]
                );
            }
            Ok(if !round.refused.is_empty() || !round.unsigned.is_empty() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        AuditCommand::Export {
            tenant,
            since,
            until,
        } => {
            let filter = ExportFilter {
                tenant: TenantId(tenant),
                since,
                until,
            };
            let mut chunks = Box::pin(ndjson(open(config).await?, filter));
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            while let Some(chunk) = chunks.next().await {
                out.write_all(&chunk?)?;
            }
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::History { file, as_of } => {
            history_of(&open(config).await?, config, file, as_of).await
        }
        AuditCommand::Transparency(command) => crate::transparency::cli::run(command, config).await,
    }
}

/// The worker role sees every tenant, as an auditor's tool must.
async fn open(config: &Config) -> anyhow::Result<sqlx::PgPool> {
    let endpoints = db::Endpoints::from_config(config);
    endpoints.migrate().await?;
    endpoints.pool(DbRole::Worker, 2).await
}

fn print_report(report: &VerifyReport) {
    println!(
        "{} streams, {} events checked",
        report.streams, report.events
    );
    for c in &report.checkpoints {
        println!(
            "checkpoint {} of tenant {} (#{}) taken {}: {} streams, digest {}",
            c.id,
            c.tenant_id,
            c.counter.map_or("legacy".to_string(), |n| n.to_string()),
            c.taken_at,
            c.streams,
            c.digest
        );
    }
    for u in &report.unprotected {
        let since = match (&u.checkpoint_id, &u.checkpoint_taken_at) {
            (Some(id), Some(at)) => format!("after checkpoint {id} ({at})"),
            _ => "no checkpoint yet".to_string(),
        };
        println!(
            "unprotected {}: {} events in {} streams ({} new) {since}{}",
            u.tenant_id,
            u.events,
            u.streams,
            u.new_streams,
            u.oldest_recorded_at
                .as_ref()
                .map_or(String::new(), |at| format!(", oldest recorded {at}"))
        );
    }
    for b in &report.breaks {
        println!(
            "BROKEN {} {}/{} at sequence {}: {} (expected {}, found {})",
            b.tenant_id,
            b.aggregate_type,
            b.aggregate_id,
            b.sequence,
            b.problem.as_str(),
            b.expected,
            b.found
        );
    }
}

async fn history_of(
    pool: &sqlx::PgPool,
    config: &Config,
    file: Uuid,
    as_of: Option<DateTime<Utc>>,
) -> anyhow::Result<ExitCode> {
    let id = file.to_string();
    let Some(tenant) = history::tenant_of(pool, "file", &id).await? else {
        eprintln!("no file {id}");
        return Ok(ExitCode::FAILURE);
    };
    let stream = StreamRef {
        tenant,
        aggregate_type: "file",
        aggregate_id: &id,
    };
    let end = match as_of {
        Some(at) => history::sequence_at(pool, stream, at).await?,
        None => history::end(pool, stream).await?,
    };
    println!("file {id} of tenant {tenant}");
    let mut after = 0;
    while after < end {
        let page = history::page(pool, stream, after, 500.min(end - after)).await?;
        let Some(last) = page.last() else { break };
        after = last.sequence;
        for event in &page {
            println!("{}", StoreEventLine(event));
        }
    }
    if end == 0 {
        println!("(the file did not exist yet)");
        return Ok(ExitCode::FAILURE);
    }
    let store =
        ChronicleStore::<File>::new(EventLog::new(pool.clone()), tenant, config.snapshot_every);
    let state = store
        .load_at(&id, end as u64)
        .await
        .map_err(|e| anyhow::anyhow!("replaying the file: {e}"))?;
    println!("state after sequence {end}:");
    println!("{}", serde_json::to_string_pretty(&state.aggregate)?);
    Ok(ExitCode::SUCCESS)
}
