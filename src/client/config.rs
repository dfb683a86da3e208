//! Where the client finds its server and key: flags, then the environment
//! (`CHRONICLE_SERVER`, `CHRONICLE_API_KEY`), then the config file (TOML: `server`,
//! `api_key`). Resumable uploads are remembered in a state file beside it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{ClientError, Connection};

const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    server: Option<String>,
    api_key: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub server: String,
    pub api_key: Option<String>,
    pub path: PathBuf,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// `$XDG_<kind>_HOME/chronicle` or `~/<fallback>/chronicle`.
fn base_dir(kind: &str, fallback: &str) -> PathBuf {
    env(&format!("XDG_{kind}_HOME"))
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| Path::new(&h).join(fallback)))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("chronicle")
}

/// Where resumable uploads are remembered (`CHRONICLE_STATE_DIR` overrides).
pub fn state_dir() -> PathBuf {
    env("CHRONICLE_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| base_dir("STATE", ".local/state"))
}

impl ClientConfig {
    pub fn resolve(conn: &Connection) -> Result<Self, ClientError> {
        let path = conn
            .config
            .clone()
            .or_else(|| env("CHRONICLE_CONFIG").map(PathBuf::from))
            .unwrap_or_else(|| base_dir("CONFIG", ".config").join("client.toml"));
        let file: File = match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text)
                .map_err(|e| ClientError::Usage(format!("{}: {e}", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => File::default(),
            Err(e) => return Err(ClientError::Usage(format!("{}: {e}", path.display()))),
        };
        let server = conn
            .server
            .clone()
            .or_else(|| env("CHRONICLE_SERVER"))
            .or(file.server)
            .unwrap_or_else(|| DEFAULT_SERVER.to_string());
        let server = server.trim_end_matches('/').to_string();
        if !(server.starts_with("http://") || server.starts_with("https://")) {
            return Err(ClientError::Usage(format!(
                "server must be an http(s) URL, not {server:?}"
            )));
        }
        let api_key = conn
            .api_key
            .clone()
            .or_else(|| env("CHRONICLE_API_KEY"))
            .or(file.api_key);
        Ok(Self {
            server,
            api_key,
            path,
        })
    }

    /// Writes the config file, readable by its owner only (it holds the key).
    pub fn save(&self) -> Result<PathBuf, ClientError> {
        let text = toml::to_string(&File {
            server: Some(self.server.clone()),
            api_key: self.api_key.clone(),
        })
        .map_err(|e| ClientError::Usage(e.to_string()))?;
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| ClientError::io(&self.path, e))?;
        }
        write_private(&self.path, text.as_bytes()).map_err(|e| ClientError::io(&self.path, e))?;
        Ok(self.path.clone())
    }
}

/// Writes `bytes` to `path` atomically (temporary file, then rename), mode 0600.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}
