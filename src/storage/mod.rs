//! Where bytes live: temporary uploads and content-addressed final blobs, through
//! `object_store` — the local filesystem under `DATA_DIR` by default, any S3-compatible
//! service when `S3_BUCKET` is set. Every key starts with the tenant (invariant 3).
//!
//! Keys:
//! - `tmp/{tenant}/{upload}` — an upload until the worker has finished with it;
//! - `blobs/{tenant}/{sha256[..2]}/{sha256}` — a version's bytes, stored once per tenant
//!   however many versions repeat them (dedup is tenant-scoped);
//! - `variants/{tenant}/{sha256}/{name}` — derived renditions (thumbnail, stripped copy).

mod build;
mod multipart;
mod presign;
mod staging;
#[cfg(test)]
mod tests;
mod writer;

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload};
use uuid::Uuid;

use crate::config::StorageSettings;
use crate::ids::TenantId;

pub use multipart::part_size;
pub use writer::ObjectWriter;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("object not found")]
    NotFound,
    /// The disk (or the account's quota) has no room for the bytes.
    #[error("storage is full: {0}")]
    Full(object_store::Error),
    #[error("storage: {0}")]
    Backend(#[from] object_store::Error),
}

impl StorageError {
    fn from_store(err: object_store::Error) -> Self {
        match err {
            object_store::Error::NotFound { .. } => StorageError::NotFound,
            other
                if std::iter::successors(Some(&other as &dyn std::error::Error), |e| {
                    e.source()
                })
                .any(|e| e.downcast_ref::<std::io::Error>().is_some_and(is_full)) =>
            {
                StorageError::Full(other)
            }
            other => StorageError::Backend(other),
        }
    }
}

/// Whether a write failed for want of room: the filesystem is full (`ENOSPC`) or the
/// user's disk quota is used up (`EDQUOT`).
pub fn is_full(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

/// Bytes of one object (or a range of it), streamed.
pub struct ObjectBytes {
    /// The object's full size, whatever range was asked for.
    pub size: u64,
    /// The range `stream` yields.
    pub range: Range<u64>,
    pub stream: BoxStream<'static, Result<Bytes, StorageError>>,
}

#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    /// "local" or "s3", for logs and readiness.
    pub kind: &'static str,
    /// The local store's directory: resumable uploads append to files under it.
    local_root: Option<std::path::PathBuf>,
    /// S3's multipart API, which resumable uploads drive part by part (multipart.rs).
    multipart: Option<Arc<dyn object_store::multipart::MultipartStore>>,
    /// S3's request signer, for presigned part and download URLs (presign.rs).
    signer: Option<Arc<object_store::aws::AmazonS3>>,
}

impl Storage {
    pub fn open(settings: &StorageSettings) -> anyhow::Result<Self> {
        build::build(settings)
    }

    /// The local filesystem under `root` (created if missing), with fsync on every
    /// write, so "durable" means durable.
    ///
    /// Directories stay when their last object goes (no automatic cleanup). With it,
    /// every delete of a temporary upload also tried to remove `tmp/{tenant}/` (a failed
    /// `rmdir` per upload while others were in flight), and once the worker had drained
    /// it, did — so the tenant's next upload created and fsynced it again. What stays is
    /// bounded: one `tmp/` directory and at most 256 `blobs/` directories per tenant; a
    /// blob's `variants/` directory goes with its blob (`forget_variants`).
    pub fn local(root: &std::path::Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(root)?;
        let store = LocalFileSystem::new_with_prefix(root)?
            .with_automatic_cleanup(false)
            .with_fsync(true);
        Ok(Self {
            store: Arc::new(store),
            kind: "local",
            local_root: Some(root.to_path_buf()),
            multipart: None,
            signer: None,
        })
    }

    fn from_s3(store: Arc<object_store::aws::AmazonS3>) -> Self {
        Self {
            store: store.clone(),
            kind: "s3",
            local_root: None,
            multipart: Some(store.clone()),
            signer: Some(store),
        }
    }

    /// Where `key` lives on disk, for the local store (`None` for S3). Only for keys this
    /// crate builds (`temp_key` …): they contain no `..` and no client text.
    pub fn local_path(&self, key: &str) -> Option<std::path::PathBuf> {
        self.local_root.as_ref().map(|root| root.join(key))
    }

    pub fn temp_key(tenant: TenantId, upload: Uuid) -> String {
        format!("tmp/{tenant}/{upload}")
    }

    pub fn blob_key(tenant: TenantId, sha256: &str) -> String {
        format!("blobs/{tenant}/{}/{sha256}", &sha256[..2.min(sha256.len())])
    }

    pub fn variant_key(tenant: TenantId, sha256: &str, name: &str) -> String {
        format!("{}/{name}", Self::variants_of(tenant, sha256))
    }

    /// The prefix of `sha256`'s variants.
    fn variants_of(tenant: TenantId, sha256: &str) -> String {
        format!("variants/{tenant}/{sha256}")
    }

    /// Starts a streamed upload to `key`; nothing is visible at `key` until `finish`.
    pub fn writer(&self, key: &str) -> ObjectWriter {
        ObjectWriter::new(self.store.clone(), Path::from(key))
    }

    /// Stores small bytes (variants) in one request.
    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StorageError> {
        self.store
            .put(&Path::from(key), PutPayload::from(bytes))
            .await
            .map_err(StorageError::from_store)?;
        Ok(())
    }

    /// Reads an object, or `range` of it (clamped to its size), as a stream.
    pub async fn read(
        &self,
        key: &str,
        range: Option<Range<u64>>,
    ) -> Result<ObjectBytes, StorageError> {
        let options = GetOptions {
            range: range.map(GetRange::Bounded),
            ..GetOptions::default()
        };
        let result = self
            .store
            .get_opts(&Path::from(key), options)
            .await
            .map_err(StorageError::from_store)?;
        let size = result.meta.size;
        let range = result.range.clone();
        let stream = result
            .into_stream()
            .map_err(StorageError::from_store)
            .boxed();
        Ok(ObjectBytes {
            size,
            range,
            stream,
        })
    }

    /// The whole object in memory: only for objects known to be small (images up to the
    /// optimiser's limit).
    pub async fn read_all(&self, key: &str) -> Result<Bytes, StorageError> {
        let result = self
            .store
            .get(&Path::from(key))
            .await
            .map_err(StorageError::from_store)?;
        result.bytes().await.map_err(StorageError::from_store)
    }

    pub async fn exists(&self, key: &str) -> Result<bool, StorageError> {
        match self.store.head(&Path::from(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(other) => Err(StorageError::Backend(other)),
        }
    }

    /// Copies `from` to `to` unless `to` exists. Keys are content-addressed, so an
    /// existing `to` already holds these bytes and a concurrent copy writes the same ones.
    pub async fn copy_if_absent(&self, from: &str, to: &str) -> Result<(), StorageError> {
        // The local store's create-only copy (a hard link) finds an existing `to` by
        // itself; asking first would cost a file-system call of its own per job.
        if self.local_root.is_none() && self.exists(to).await? {
            return Ok(());
        }
        match self
            .store
            .copy_if_not_exists(&Path::from(from), &Path::from(to))
            .await
        {
            Ok(()) | Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
            // S3 has no portable create-only copy; a plain copy of identical bytes is safe.
            Err(
                object_store::Error::NotImplemented { .. }
                | object_store::Error::NotSupported { .. },
            ) => self
                .store
                .copy(&Path::from(from), &Path::from(to))
                .await
                .map_err(StorageError::from_store),
            Err(other) => Err(StorageError::from_store(other)),
        }
    }

    /// Keys under `prefix` last written before `before`.
    pub async fn list_older(
        &self,
        prefix: &str,
        before: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<String>, StorageError> {
        let objects: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&Path::from(prefix)))
            .try_collect()
            .await
            .map_err(StorageError::from_store)?;
        Ok(objects
            .into_iter()
            .filter(|o| o.last_modified < before)
            .map(|o| o.location.to_string())
            .collect())
    }

    /// Deletes `key`; a missing object is not an error (deletes are retried).
    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        match self.store.delete(&Path::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(other) => Err(StorageError::Backend(other)),
        }
    }

    /// Removes the directory of `sha256`'s variants once they are deleted (local only;
    /// S3 has no directories). A directory that is not empty (the same bytes arrived
    /// again and got a variant meanwhile) or already gone is left as it is; a variant
    /// written while its directory goes recreates it (object_store creates parents).
    pub async fn forget_variants(&self, tenant: TenantId, sha256: &str) {
        if let Some(dir) = self.local_path(&Self::variants_of(tenant, sha256)) {
            let _ = tokio::fs::remove_dir(dir).await;
        }
    }

    /// Whether the store accepts a write and a delete (readiness), local or S3.
    pub async fn ping(&self) -> Result<(), StorageError> {
        self.put("health/probe", b"ok".to_vec()).await?;
        self.delete("health/probe").await
    }
}
