//! Presigned S3 URLs: the bucket takes a direct upload's parts and serves downloads
//! itself, so those bytes never pass an API instance. Each URL allows one request on
//! one key for a short time; Chronicle decides who gets one (the same authorization as
//! the proxied routes) and keeps the events.

use std::time::Duration;

use object_store::ObjectStoreExt;
use object_store::path::Path;
use object_store::signer::{SignedUrlOptions, Signer};

use super::{Storage, StorageError};

impl Storage {
    fn signer(&self) -> Result<&dyn Signer, StorageError> {
        self.signer
            .as_deref()
            .map(|s| s as &dyn Signer)
            .ok_or_else(|| {
                StorageError::Backend(object_store::Error::NotImplemented {
                    operation: "presigned URLs outside S3".into(),
                    implementer: self.kind.into(),
                })
            })
    }

    /// Whether presigned URLs (direct uploads, redirected downloads) are available.
    pub fn presigns(&self) -> bool {
        self.signer.is_some()
    }

    /// A URL that accepts one `PUT` of part `number` (1-based, as S3 numbers them) of
    /// multipart upload `id` at `key`, until `expires_in` has passed.
    pub async fn presign_part(
        &self,
        key: &str,
        id: &str,
        number: u32,
        expires_in: Duration,
    ) -> Result<String, StorageError> {
        let options = SignedUrlOptions::default().with_query([
            ("partNumber", number.to_string()),
            ("uploadId", id.to_string()),
        ]);
        let url = self
            .signer()?
            .signed_url_opts(
                axum::http::Method::PUT,
                &Path::from(key),
                expires_in,
                &options,
            )
            .await
            .map_err(StorageError::from_store)?;
        Ok(url.to_string())
    }

    /// A URL that serves `key` for `expires_in`, with the download's own
    /// `Content-Disposition` and `Content-Type` (signed, so they cannot be changed).
    pub async fn presign_get(
        &self,
        key: &str,
        expires_in: Duration,
        content_disposition: &str,
        content_type: &str,
    ) -> Result<String, StorageError> {
        let options = SignedUrlOptions::default().with_query([
            ("response-content-disposition", content_disposition),
            ("response-content-type", content_type),
        ]);
        let url = self
            .signer()?
            .signed_url_opts(
                axum::http::Method::GET,
                &Path::from(key),
                expires_in,
                &options,
            )
            .await
            .map_err(StorageError::from_store)?;
        Ok(url.to_string())
    }

    /// The object's size, or `None` when it does not exist.
    pub async fn size_of(&self, key: &str) -> Result<Option<u64>, StorageError> {
        match self.store.head(&Path::from(key)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(other) => Err(StorageError::Backend(other)),
        }
    }
}
