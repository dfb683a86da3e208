//! Opens the blob store its settings (src/config/storage.rs) describe.

use std::sync::Arc;

use object_store::aws::AmazonS3Builder;

use super::Storage;
use crate::config::StorageSettings;

/// Builds the store `settings` describe.
pub(super) fn build(settings: &StorageSettings) -> anyhow::Result<Storage> {
    match settings {
        StorageSettings::Local { root } => Storage::local(root),
        StorageSettings::S3 {
            bucket,
            endpoint,
            region,
            access_key_id,
            secret_access_key,
            allow_http,
        } => {
            let mut builder = AmazonS3Builder::new()
                .with_bucket_name(bucket)
                .with_region(region)
                .with_allow_http(*allow_http);
            if let Some(endpoint) = endpoint {
                builder = builder.with_endpoint(endpoint);
            }
            if let (Some(id), Some(secret)) = (access_key_id, secret_access_key) {
                builder = builder
                    .with_access_key_id(id)
                    .with_secret_access_key(secret.expose());
            }
            Ok(Storage::from_s3(Arc::new(builder.build()?)))
        }
    }
}
