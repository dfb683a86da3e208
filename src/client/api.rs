//! The client's HTTP side: one `reqwest` client with the API key, and errors mapped to
//! the exit codes of docs/cli.md.

use std::path::Path;
use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::Value;

use super::ClientConfig;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Usage(String),
    /// The server answered with an error (its JSON error body's code and message).
    #[error("{status}: {code}: {message}")]
    Api {
        status: StatusCode,
        code: String,
        message: String,
    },
    #[error("cannot reach the server: {0}")]
    Network(String),
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("unexpected answer: {0}")]
    Protocol(String),
    /// Already reported by the command (e.g. in its JSON document): only its exit code
    /// is left to give.
    #[error("{0}")]
    Reported(Box<ClientError>),
}

impl ClientError {
    pub fn io(path: &Path, err: std::io::Error) -> Self {
        ClientError::Io {
            path: path.display().to_string(),
            message: err.to_string(),
        }
    }

    /// The documented exit code (docs/cli.md).
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Usage(_) | ClientError::Io { .. } => 2,
            ClientError::Api { status, .. } => match status.as_u16() {
                401 | 403 => 3,
                404 | 410 => 4,
                500.. => 5,
                _ => 6,
            },
            ClientError::Network(_) | ClientError::Protocol(_) => 5,
            ClientError::Reported(inner) => inner.exit_code(),
        }
    }

    pub fn code(&self) -> String {
        match self {
            ClientError::Usage(_) => "usage".into(),
            ClientError::Api { code, .. } => code.clone(),
            ClientError::Network(_) => "network".into(),
            ClientError::Io { .. } => "io".into(),
            ClientError::Protocol(_) => "protocol".into(),
            ClientError::Reported(inner) => inner.code(),
        }
    }

    /// Worth trying again: the network, a timeout, or the server's own failure.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Network(_) => true,
            ClientError::Api { status, .. } => {
                status.is_server_error() || *status == StatusCode::TOO_MANY_REQUESTS
            }
            _ => false,
        }
    }
}

impl From<reqwest::Error> for ClientError {
    fn from(err: reqwest::Error) -> Self {
        ClientError::Network(err.to_string())
    }
}

#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    server: String,
    key: Option<String>,
}

impl Api {
    pub fn new(config: &ClientConfig) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(120))
            .user_agent(concat!("chronicle-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Usage(e.to_string()))?;
        Ok(Self {
            http,
            server: config.server.clone(),
            key: config.api_key.clone(),
        })
    }

    /// `path` (`/v1/…`) or an absolute URL the server gave (a tus `Location`).
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{path}", self.server)
        }
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    pub fn request(&self, method: Method, path: &str) -> Result<RequestBuilder, ClientError> {
        let key = self.key.as_deref().ok_or_else(|| {
            ClientError::Usage(
                "no API key: pass --api-key, set CHRONICLE_API_KEY or run `chronicle client configure`".into(),
            )
        })?;
        Ok(self.http.request(method, self.url(path)).bearer_auth(key))
    }

    /// Sends, and turns an error status into `ClientError::Api`.
    pub async fn send(&self, request: RequestBuilder) -> Result<Response, ClientError> {
        let response = request.send().await?;
        if response.status().is_client_error() || response.status().is_server_error() {
            return Err(error_of(response).await);
        }
        Ok(response)
    }

    pub async fn get_json(&self, path: &str) -> Result<Value, ClientError> {
        let response = self.send(self.request(Method::GET, path)?).await?;
        response
            .json()
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))
    }
}

/// The one error shape (`{"error": {"code", "message"}}`), or the bare status.
pub async fn error_of(response: Response) -> ClientError {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let text = |k: &str| body["error"][k].as_str().map(str::to_string);
    ClientError::Api {
        status,
        code: text("code").unwrap_or_else(|| status.as_str().to_string()),
        message: text("message").unwrap_or_else(|| status.canonical_reason().unwrap_or("").into()),
    }
}
