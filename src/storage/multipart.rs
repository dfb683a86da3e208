//! S3's multipart API for resumable uploads, which outlive any one request or instance:
//! the multipart id, part numbers and e-tags are recorded in the Upload aggregate, so
//! any instance can add the next part or complete the object (src/uploads/parts.rs).
//! `WriteMultipart` (mod.rs) cannot do that: its state lives in one process.
//!
//! Keys: the object itself is the upload's `tmp/{tenant}/{upload}`; the bytes after the
//! last full part wait in `tus-tails/{tenant}/{upload}/{offset}-{writer}`, outside `tmp/`, so the
//! temp sweeper never takes the tail of an upload that is only paused.

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use uuid::Uuid;

use super::{Storage, StorageError};
use crate::ids::TenantId;

/// The usual part size (S3's floor is 5 MiB for every part but the last); one part is what a PATCH buffers at most.
pub const PART_SIZE: u64 = 8 * 1024 * 1024;
/// S3 numbers parts 1..=10000.
const MAX_PARTS: u64 = 10_000;

/// The part size for an upload that may reach `max_size` bytes: 8 MiB, or larger (in
/// whole MiB) when 10 000 parts of 8 MiB would not hold it. Derived from the recorded
/// `max_size`, so every instance cuts the same upload at the same places.
pub fn part_size(max_size: u64) -> u64 {
    const MIB: u64 = 1024 * 1024;
    let needed = max_size.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB;
    needed.max(PART_SIZE)
}

impl Storage {
    fn multipart(&self) -> Result<&Arc<dyn MultipartStore>, StorageError> {
        self.multipart.as_ref().ok_or_else(|| {
            StorageError::Backend(object_store::Error::NotImplemented {
                operation: "multipart uploads outside S3".into(),
                implementer: self.kind.into(),
            })
        })
    }

    /// Where the bytes after an upload's last full part wait: `offset` is the upload
    /// offset they end at, `writer` is unique to the PATCH storing them. So no other
    /// chunk — discarded, or written by a holder whose lock lapsed — ever overwrites the
    /// recorded tail.
    pub fn tail_key(tenant: TenantId, upload: Uuid, offset: u64, writer: Uuid) -> String {
        format!("tus-tails/{tenant}/{upload}/{offset}-{writer}")
    }

    fn tails_prefix(tenant: TenantId, upload: Uuid) -> String {
        format!("tus-tails/{tenant}/{upload}")
    }

    /// Starts a multipart upload for `key`; returns its id.
    pub async fn create_multipart(&self, key: &str) -> Result<String, StorageError> {
        self.multipart()?
            .create_multipart(&Path::from(key))
            .await
            .map_err(StorageError::from_store)
    }

    /// Stores part `index` (0-based; the same index again replaces it); returns its e-tag.
    pub async fn put_part(
        &self,
        key: &str,
        id: &str,
        index: usize,
        bytes: Bytes,
    ) -> Result<String, StorageError> {
        let part = self
            .multipart()?
            .put_part(&Path::from(key), &id.to_string(), index, bytes.into())
            .await
            .map_err(StorageError::from_store)?;
        Ok(part.content_id)
    }

    /// Joins the parts (e-tags in part order) into the object at `key`.
    pub async fn complete_multipart(
        &self,
        key: &str,
        id: &str,
        e_tags: &[String],
    ) -> Result<(), StorageError> {
        let parts = e_tags
            .iter()
            .map(|t| PartId {
                content_id: t.clone(),
            })
            .collect();
        self.multipart()?
            .complete_multipart(&Path::from(key), &id.to_string(), parts)
            .await
            .map_err(StorageError::from_store)?;
        Ok(())
    }

    /// Drops a multipart upload and all its parts; an unknown id is not an error
    /// (aborts are retried).
    pub async fn abort_multipart(&self, key: &str, id: &str) -> Result<(), StorageError> {
        match self
            .multipart()?
            .abort_multipart(&Path::from(key), &id.to_string())
            .await
        {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(other) => Err(StorageError::Backend(other)),
        }
    }

    /// Stores a tail (less than one part) in one request.
    pub async fn put_tail(&self, key: &str, bytes: Bytes) -> Result<(), StorageError> {
        self.store
            .put(&Path::from(key), PutPayload::from(bytes))
            .await
            .map_err(StorageError::from_store)?;
        Ok(())
    }

    /// Deletes every tail of an upload, recorded or stray; returns how many.
    pub async fn delete_tails(
        &self,
        tenant: TenantId,
        upload: Uuid,
    ) -> Result<usize, StorageError> {
        let prefix = Path::from(Self::tails_prefix(tenant, upload));
        let keys: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(StorageError::from_store)?;
        for meta in &keys {
            self.delete(meta.location.as_ref()).await?;
        }
        Ok(keys.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_8_mib_until_10000_of_them_would_not_do() {
        assert_eq!(part_size(0), PART_SIZE);
        assert_eq!(part_size(10 * 1024 * 1024 * 1024), PART_SIZE);
        assert_eq!(part_size(MAX_PARTS * PART_SIZE), PART_SIZE);
        let big = 200 * 1024 * 1024 * 1024;
        let size = part_size(big);
        assert!(size * MAX_PARTS >= big && size > PART_SIZE);
        assert_eq!(size % (1024 * 1024), 0);
    }
}
