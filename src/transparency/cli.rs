//! `chronicle audit …` for the transparency log: sign tree heads now, print a tenant's
//! signed head and verifier key, and produce inclusion and consistency proofs (the same
//! JSON as the API). Exit codes: 0 done, 1 nothing to prove it with (no such event or
//! head yet), 2 bad usage or configuration.

use std::process::ExitCode;

use clap::Subcommand;
use uuid::Uuid;

use super::proofs::{self, ProofError};
use super::{builder, heads};
use crate::config::Config;
use crate::db::{self, DbRole};

#[derive(Subcommand)]
pub enum TransparencyCommand {
    /// Append every committed event to its tenant's Merkle tree and sign a head for every
    /// tree that grew, now (the worker does this continuously).
    SignTreeHeads,
    /// Print a tenant's newest signed tree head (a C2SP checkpoint note), or the one of
    /// `--size`.
    TreeHead {
        #[arg(long)]
        tenant: Uuid,
        #[arg(long)]
        size: Option<u64>,
    },
    /// Print the signed-note verifier key of a tenant's log (`<origin>+<id>+<key>`), for
    /// auditors to keep outside the database.
    LogKey {
        #[arg(long)]
        tenant: Uuid,
    },
    /// Print a proof (JSON) that the event at `--position` is in the tenant's log.
    ProveInclusion {
        #[arg(long)]
        tenant: Uuid,
        /// The event's global position (`global_position` in exports, `id` in the audit log).
        #[arg(long)]
        position: i64,
        /// A signed tree size (default: the newest signed head).
        #[arg(long)]
        tree_size: Option<u64>,
    },
    /// Print a proof (JSON) that the tenant's tree of `--from` leaves is a prefix of its
    /// signed tree of `--to` leaves (default: the newest signed head).
    ProveConsistency {
        #[arg(long)]
        tenant: Uuid,
        #[arg(long)]
        from: u64,
        #[arg(long)]
        to: Option<u64>,
    },
}

pub async fn run(command: TransparencyCommand, config: &Config) -> anyhow::Result<ExitCode> {
    let checkpoints = &config.checkpoints;
    let settings = &config.transparency;
    if let TransparencyCommand::LogKey { tenant } = command {
        if checkpoints.key_generated {
            eprintln!("CHECKPOINT_SIGNING_KEY is not set: there is no stable key to give out");
            return Ok(ExitCode::from(2));
        }
        println!(
            "{}",
            heads::verifier_key(&settings.origin, tenant, &checkpoints.key.verifying())
        );
        return Ok(ExitCode::SUCCESS);
    }
    let endpoints = db::Endpoints::from_config(config);
    endpoints.migrate().await?;
    // The worker role sees every tenant, as an operator's tool must.
    let pool = endpoints.pool(DbRole::Worker, 2).await?;
    let mut conn = pool.acquire().await?;
    let answer = match command {
        TransparencyCommand::LogKey { .. } => unreachable!("answered above"),
        TransparencyCommand::SignTreeHeads => {
            if checkpoints.key_generated {
                eprintln!(
                    "CHECKPOINT_SIGNING_KEY is not set: a head signed by a throwaway key proves nothing"
                );
                return Ok(ExitCode::from(2));
            }
            let appended = builder::catch_up(&pool).await?;
            let signed = heads::sign_due(
                &pool,
                &checkpoints.key,
                &settings.origin,
                std::time::Duration::ZERO,
            )
            .await?;
            println!("{appended} leaves appended");
            for h in signed {
                println!(
                    "signed tenant {} tree size {} root {}",
                    h.tenant_id, h.tree_size, h.root
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
        TransparencyCommand::TreeHead { tenant, size } => {
            proofs::tree_head(&mut conn, tenant, size)
                .await
                .map(|h| h.note)
        }
        TransparencyCommand::ProveInclusion {
            tenant,
            position,
            tree_size,
        } => match proofs::prove_inclusion(&mut conn, tenant, position, tree_size).await {
            Ok(p) => Ok(serde_json::to_string_pretty(&p)?),
            Err(e) => Err(e),
        },
        TransparencyCommand::ProveConsistency { tenant, from, to } => {
            match proofs::prove_consistency(&mut conn, tenant, from, to).await {
                Ok(p) => Ok(serde_json::to_string_pretty(&p)?),
                Err(e) => Err(e),
            }
        }
    };
    match answer {
        Ok(text) => {
            print!("{text}");
            if !text.ends_with('\n') {
                println!();
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(ProofError::Tree(e)) => Err(e.into()),
        Err(e @ (ProofError::BadRange(_) | ProofError::LoggedLater { .. })) => {
            eprintln!("{e}");
            Ok(ExitCode::from(2))
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(ExitCode::FAILURE)
        }
    }
}
