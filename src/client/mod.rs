//! `chronicle client …`: the command-line client for API users (docs/cli.md). It talks
//! to a Chronicle server over HTTP with an API key, like any integration would: tus
//! uploads that resume across process restarts, downloads that resume with `Range` and
//! check the SHA-256 `ETag`, listings, the inbox, the feed, and a local check of the hash
//! chain.
//! Every command takes `--json` (one JSON document, or one per line for `watch`).
//!
//! Exit codes (`Exit`): 0 done; 1 a check failed (checksum, hash chain); 2 usage or
//! configuration; 3 refused (401, 403); 4 not found (404, 410); 5 the server or the
//! network failed (5xx, connection, timeout); 6 any other refusal (4xx).

mod api;
mod config;
mod download;
mod files;
mod inbox;
mod upload;
mod verify;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

pub use api::{Api, ClientError};
pub use config::ClientConfig;

/// Connection options every subcommand takes.
#[derive(Args, Debug, Clone)]
pub struct Connection {
    /// Server URL (else `CHRONICLE_SERVER`, else the config file's `server`).
    #[arg(long, global = true)]
    pub server: Option<String>,
    /// API key (else `CHRONICLE_API_KEY`, else the config file's `api_key`).
    #[arg(long, global = true)]
    pub api_key: Option<String>,
    /// Config file (else `CHRONICLE_CONFIG`, else `$XDG_CONFIG_HOME/chronicle/client.toml`).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Machine-readable output: JSON on stdout, no progress bars.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ClientArgs {
    #[command(flatten)]
    pub connection: Connection,
    #[command(subcommand)]
    pub command: ClientCommand,
}

#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// Save the server URL and API key to the config file (mode 0600).
    Configure,
    /// Upload files with tus: resumable across restarts, checksummed per chunk.
    Upload(upload::UploadArgs),
    /// Download a file (resumes a partial download, verifies the SHA-256 ETag).
    Download(download::DownloadArgs),
    /// List files.
    Ls(files::LsArgs),
    /// One file's metadata.
    Info { file_id: uuid::Uuid },
    /// One file's versions.
    Versions { file_id: uuid::Uuid },
    /// One file's events (needs audit:read).
    History { file_id: uuid::Uuid },
    /// The tenant's stored bytes and storage quota (needs files:write).
    Usage,
    /// My notifications, newest first (`*` marks unread); `--read-all` marks every
    /// unread one read.
    Notifications(inbox::NotificationsArgs),
    /// Follow the tenant's event feed, one line per event (needs feed:read).
    Watch(watch::WatchArgs),
    /// Fetch the tenant's events (audit export) and check the hash chain locally
    /// (needs audit:read).
    Verify(verify::VerifyArgs),
}

/// What a command ends with: printed, then the process exits with its code.
pub enum Exit {
    Ok,
    /// A check failed (exit 1): the message says which.
    CheckFailed(String),
}

pub fn main(args: ClientArgs) -> ExitCode {
    let json = args.connection.json;
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("cannot start the async runtime: {err}");
            return ExitCode::from(5);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(Exit::Ok) => ExitCode::SUCCESS,
        Ok(Exit::CheckFailed(message)) => {
            if !json {
                eprintln!("check failed: {message}");
            }
            ExitCode::from(1)
        }
        Err(ClientError::Reported(err)) => ExitCode::from(err.exit_code()),
        Err(err) => {
            if json {
                let body =
                    serde_json::json!({"error": {"code": err.code(), "message": err.to_string()}});
                println!("{body}");
            } else {
                eprintln!("error: {err}");
            }
            ExitCode::from(err.exit_code())
        }
    }
}

async fn run(args: ClientArgs) -> Result<Exit, ClientError> {
    let conn = &args.connection;
    let config = ClientConfig::resolve(conn)?;
    if let ClientCommand::Configure = args.command {
        let path = config.save()?;
        output(
            conn.json,
            &serde_json::json!({"config": path, "server": config.server}),
            || format!("saved {}", path.display()),
        );
        return Ok(Exit::Ok);
    }
    let api = Api::new(&config)?;
    match args.command {
        ClientCommand::Configure => unreachable!("handled above"),
        ClientCommand::Upload(a) => upload::run(&api, a, conn.json).await,
        ClientCommand::Download(a) => download::run(&api, a, conn.json).await,
        ClientCommand::Ls(a) => files::ls(&api, a, conn.json).await,
        ClientCommand::Info { file_id } => files::info(&api, file_id, conn.json).await,
        ClientCommand::Versions { file_id } => files::versions(&api, file_id, conn.json).await,
        ClientCommand::History { file_id } => files::history(&api, file_id, conn.json).await,
        ClientCommand::Usage => files::usage(&api, conn.json).await,
        ClientCommand::Notifications(args) => inbox::notifications(&api, args, conn.json).await,
        ClientCommand::Watch(a) => watch::run(&api, a, conn.json).await,
        ClientCommand::Verify(a) => verify::run(&api, a, conn.json).await,
    }
}

/// Prints `value` as JSON, or `human()` for people.
pub(crate) fn output(json: bool, value: &serde_json::Value, human: impl FnOnce() -> String) {
    if json {
        println!("{value}");
    } else {
        println!("{}", human());
    }
}
