//! Streamed writes of one object. Most uploads are small, so the writer holds the first
//! bytes and opens nothing until they pass [`ONE_REQUEST_UP_TO`]: an object that ends
//! below it is stored by one `put` — on the local store one blocking task (create,
//! write, fsync, rename) instead of three hand-offs (create, part, complete), on S3 one
//! request instead of three (create, part, complete a multipart upload). A larger one
//! continues as a multipart upload with the held bytes as its start, its memory bounded
//! as before (about `PARTS_IN_FLIGHT` × `PART_SIZE`).

use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};

use super::StorageError;

/// Multipart part size: S3 needs ≥ 5 MiB parts; the local store writes each part in place.
const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts in flight per upload: bounds an upload's memory to about 2 × PART_SIZE.
const PARTS_IN_FLIGHT: usize = 2;
/// Objects up to this size are stored with one `put`.
pub(super) const ONE_REQUEST_UP_TO: usize = 1024 * 1024;

/// A streamed upload in progress. Nothing is visible at its key until `finish`; drop
/// without `finish` aborts it.
pub struct ObjectWriter {
    store: Arc<dyn ObjectStore>,
    key: Path,
    state: Option<Writing>,
}

enum Writing {
    /// Nothing sent yet: the bytes so far.
    Held { chunks: Vec<Bytes>, len: usize },
    /// Past `ONE_REQUEST_UP_TO`: a multipart upload.
    Streaming(WriteMultipart),
}

impl ObjectWriter {
    pub(super) fn new(store: Arc<dyn ObjectStore>, key: Path) -> Self {
        ObjectWriter {
            store,
            key,
            state: Some(Writing::Held {
                chunks: Vec::new(),
                len: 0,
            }),
        }
    }

    /// Adds `bytes`; past the one-request size, sends parts, waiting while too many are
    /// in flight.
    pub async fn write(&mut self, bytes: Bytes) -> Result<(), StorageError> {
        match self.state.as_mut().expect("writer used after finish") {
            Writing::Held { chunks, len } if *len + bytes.len() <= ONE_REQUEST_UP_TO => {
                *len += bytes.len();
                chunks.push(bytes);
                Ok(())
            }
            Writing::Held { chunks, .. } => {
                let held = std::mem::take(chunks);
                let upload = self
                    .store
                    .put_multipart(&self.key)
                    .await
                    .map_err(StorageError::from_store)?;
                let mut inner = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
                for chunk in held.iter().chain(std::iter::once(&bytes)) {
                    inner.write(chunk);
                }
                self.state = Some(Writing::Streaming(inner));
                Ok(())
            }
            Writing::Streaming(inner) => {
                inner
                    .wait_for_capacity(PARTS_IN_FLIGHT)
                    .await
                    .map_err(StorageError::from_store)?;
                inner.write(&bytes);
                Ok(())
            }
        }
    }

    /// Completes the upload: when this returns, the object is durable and visible.
    pub async fn finish(mut self) -> Result<(), StorageError> {
        match self.state.take().expect("writer finished twice") {
            Writing::Held { chunks, .. } => {
                let payload: PutPayload = chunks.into_iter().collect();
                self.store
                    .put(&self.key, payload)
                    .await
                    .map_err(StorageError::from_store)?;
            }
            Writing::Streaming(inner) => {
                inner.finish().await.map_err(StorageError::from_store)?;
            }
        }
        Ok(())
    }

    /// Abandons the upload, removing what was written (held bytes were never sent).
    pub async fn abort(mut self) {
        if let Some(Writing::Streaming(inner)) = self.state.take()
            && let Err(err) = inner.abort().await
        {
            tracing::warn!(error = %err, "aborting an upload failed; its parts stay until cleanup");
        }
    }
}

impl Drop for ObjectWriter {
    fn drop(&mut self) {
        if let Some(Writing::Streaming(inner)) = self.state.take() {
            // A dropped request (client gone): abort in the background.
            tokio::spawn(async move {
                let _ = inner.abort().await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Storage;
    use super::*;

    fn local() -> (std::path::PathBuf, Storage) {
        let dir = std::env::temp_dir().join(format!("writer-{}", uuid::Uuid::now_v7()));
        (dir.clone(), Storage::local(&dir).unwrap())
    }

    /// Every file under `root`, staging files included.
    fn files_under(root: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut found = Vec::new();
        let mut pending = vec![root.to_path_buf()];
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    pending.push(path);
                } else {
                    found.push(path);
                }
            }
        }
        found
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    async fn write_in_chunks(writer: &mut ObjectWriter, bytes: &[u8], chunk: usize) {
        for piece in bytes.chunks(chunk) {
            writer.write(Bytes::copy_from_slice(piece)).await.unwrap();
        }
    }

    #[tokio::test]
    async fn objects_on_either_side_of_the_one_request_size_store_their_bytes_only_at_finish() {
        let (root, storage) = local();
        for len in [
            0,
            10 * 1024,
            ONE_REQUEST_UP_TO,
            ONE_REQUEST_UP_TO + 1,
            3 * PART_SIZE / 2,
        ] {
            let key = format!("tmp/t/{len}");
            let bytes = pattern(len);
            let mut writer = storage.writer(&key);
            write_in_chunks(&mut writer, &bytes, 64 * 1024 + 7).await;
            assert!(
                !storage.exists(&key).await.unwrap(),
                "{len}: visible before finish"
            );
            writer.finish().await.unwrap();
            assert_eq!(
                storage.read_all(&key).await.unwrap().as_ref(),
                &bytes[..],
                "{len}"
            );
        }
        std::fs::remove_dir_all(root).unwrap();
    }

    #[tokio::test]
    async fn aborting_or_dropping_leaves_no_file_whether_held_or_streaming() {
        let (root, storage) = local();
        for (len, drop_it) in [
            (1000, false),
            (1000, true),
            (2 * ONE_REQUEST_UP_TO, false),
            (2 * ONE_REQUEST_UP_TO, true),
        ] {
            let key = format!("tmp/t/{len}-{drop_it}");
            let mut writer = storage.writer(&key);
            write_in_chunks(&mut writer, &pattern(len), 100_000).await;
            if len > ONE_REQUEST_UP_TO {
                assert!(
                    !files_under(&root).is_empty(),
                    "a streaming write has a staging file"
                );
            }
            if drop_it {
                drop(writer);
                // The drop aborts in the background.
                for _ in 0..100 {
                    if files_under(&root).is_empty() {
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            } else {
                writer.abort().await;
            }
            assert_eq!(
                files_under(&root),
                Vec::<std::path::PathBuf>::new(),
                "{len} {drop_it}"
            );
        }
        std::fs::remove_dir_all(root).unwrap();
    }
}
