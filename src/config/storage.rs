//! Storage configuration: local under `DATA_DIR` unless `S3_BUCKET` is set. Building the
//! store from it is `Storage::open` (src/storage/build.rs).

use std::path::PathBuf;

use super::{ConfigError, Secret, invalid};

#[derive(Debug, Clone)]
pub enum StorageSettings {
    Local {
        root: PathBuf,
    },
    S3 {
        bucket: String,
        /// Custom endpoint (MinIO, moto, R2 …); AWS when unset.
        endpoint: Option<String>,
        region: String,
        access_key_id: Option<String>,
        secret_access_key: Option<Secret>,
        /// Plain-HTTP endpoints are refused unless this is set (local test servers).
        allow_http: bool,
    },
}

impl StorageSettings {
    /// Reads `S3_BUCKET`, `S3_ENDPOINT`, `S3_REGION`, `S3_ACCESS_KEY_ID`,
    /// `S3_SECRET_ACCESS_KEY`, `S3_ALLOW_HTTP`; local storage in `data_dir/objects`
    /// when `S3_BUCKET` is unset.
    pub fn from_lookup(
        get: &impl Fn(&str) -> Option<String>,
        data_dir: &std::path::Path,
    ) -> Result<Self, ConfigError> {
        let Some(bucket) = get("S3_BUCKET").filter(|b| !b.is_empty()) else {
            for var in ["S3_ENDPOINT", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY"] {
                if get(var).is_some_and(|v| !v.is_empty()) {
                    return Err(invalid(var, "is set but S3_BUCKET is not"));
                }
            }
            return Ok(StorageSettings::Local {
                root: data_dir.join("objects"),
            });
        };
        let allow_http = match get("S3_ALLOW_HTTP").as_deref() {
            None | Some("") | Some("false") => false,
            Some("true") => true,
            Some(_) => return Err(invalid("S3_ALLOW_HTTP", "must be true or false")),
        };
        let endpoint = get("S3_ENDPOINT").filter(|e| !e.is_empty());
        if let Some(e) = &endpoint
            && !(e.starts_with("https://") || (allow_http && e.starts_with("http://")))
        {
            return Err(invalid(
                "S3_ENDPOINT",
                "must be an https:// URL (http:// needs S3_ALLOW_HTTP=true)",
            ));
        }
        let access_key_id = get("S3_ACCESS_KEY_ID").filter(|v| !v.is_empty());
        let secret_access_key = get("S3_SECRET_ACCESS_KEY")
            .filter(|v| !v.is_empty())
            .map(Secret::new);
        if access_key_id.is_some() != secret_access_key.is_some() {
            return Err(invalid(
                "S3_SECRET_ACCESS_KEY",
                "S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY must be set together",
            ));
        }
        Ok(StorageSettings::S3 {
            bucket,
            endpoint,
            region: get("S3_REGION").unwrap_or_else(|| "us-east-1".into()),
            access_key_id,
            secret_access_key,
            allow_http,
        })
    }
}
