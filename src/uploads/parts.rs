//! The S3 side of a resumable upload's life after its chunks: assembling the object
//! from the recorded parts and tail (completion), and dropping everything (termination,
//! expiry). Both are re-runnable after a crash at any point: the multipart id, e-tags and
//! tail are in the Upload aggregate, and S3 treats a repeated part, abort or delete alike.

use futures::StreamExt;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use bytes::Bytes;

use crate::aggregates::upload::{Tail, Upload};
use crate::ids::TenantId;
use crate::storage::{Storage, StorageError};

/// Makes `upload.temp_key` the whole upload: the tail becomes the last part and the
/// multipart upload completes. Already done (an earlier attempt completed it, then
/// crashed before the File command): nothing to do. Then the tails are deleted.
pub async fn assemble(
    storage: &Storage,
    tenant: TenantId,
    upload_id: Uuid,
    upload: &Upload,
) -> Result<(), StorageError> {
    let Some(multipart) = &upload.multipart else {
        return Ok(());
    };
    let key = &upload.temp_key;
    if !storage.exists(key).await? {
        let mut e_tags = multipart.e_tags.clone();
        if let Some(tail) = &multipart.tail {
            let bytes = read_tail(storage, tail).await?;
            // The last part may be smaller than 5 MiB.
            let tag = storage
                .put_part(key, &multipart.id, e_tags.len(), bytes)
                .await?;
            e_tags.push(tag);
        }
        if e_tags.is_empty() {
            // An empty upload: S3 cannot complete a multipart upload without parts.
            storage.put(key, Vec::new()).await?;
            storage.abort_multipart(key, &multipart.id).await?;
        } else {
            storage
                .complete_multipart(key, &multipart.id, &e_tags)
                .await?;
        }
    }
    storage.delete_tails(tenant, upload_id).await?;
    Ok(())
}

/// The recorded tail's bytes, checked against its recorded length: a wrong length would
/// shift every later part boundary.
pub async fn read_tail(storage: &Storage, tail: &Tail) -> Result<Bytes, StorageError> {
    let bytes = storage.read_all(&tail.key).await?;
    if bytes.len() as u64 != tail.length {
        return Err(StorageError::Backend(object_store::Error::Generic {
            store: "tus",
            source: format!(
                "tail {} holds {} bytes, {} recorded",
                tail.key,
                bytes.len(),
                tail.length
            )
            .into(),
        }));
    }
    Ok(bytes)
}

/// Removes every byte of an unfinished upload: the multipart upload with its parts, the
/// tails (recorded and stray), and the object (local mode: the temp file).
pub async fn discard(
    storage: &Storage,
    tenant: TenantId,
    upload_id: Uuid,
    upload: &Upload,
) -> Result<(), StorageError> {
    if let Some(multipart) = &upload.multipart {
        storage
            .abort_multipart(&upload.temp_key, &multipart.id)
            .await?;
        storage.delete_tails(tenant, upload_id).await?;
    }
    storage.delete(&upload.temp_key).await
}

/// SHA-256 of a stored object, streamed (the per-chunk hashers cannot be carried across
/// requests and instances).
pub async fn sha256_of_object(storage: &Storage, key: &str) -> Result<String, StorageError> {
    let mut object = storage.read(key, None).await?;
    let mut hasher = Sha256::new();
    while let Some(bytes) = object.stream.next().await {
        hasher.update(&bytes?);
    }
    Ok(hex::encode(hasher.finalize()))
}
