//! Receiving an upload's bytes: streamed into storage while SHA-256 is computed. Never
//! holds the whole file in memory: at most the storage writer's bounded buffers (the
//! first MiB, or its parts in flight). (The content type is detected by the worker, from the stored bytes.)

use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};

use crate::storage::{ObjectWriter, StorageError};

/// What the API learnt while the bytes went by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub size_bytes: u64,
    pub sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    #[error("the file exceeds the limit of {0} bytes")]
    TooLarge(u64),
    #[error("no bytes arrived for {0:?}")]
    Idle(Duration),
    /// The client's stream broke (malformed multipart, connection cut).
    #[error("the upload stream broke: {0}")]
    Client(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Copies `chunks` into `writer`, stopping with an error past `max_bytes` or when the
/// client sends nothing for `idle`. The caller finishes or aborts the writer.
pub async fn receive<S, E>(
    mut chunks: S,
    writer: &mut ObjectWriter,
    max_bytes: u64,
    idle: Duration,
) -> Result<Received, ReceiveError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    loop {
        let next = tokio::time::timeout(idle, chunks.next())
            .await
            .map_err(|_| ReceiveError::Idle(idle))?;
        let chunk = match next {
            None => break,
            Some(Ok(chunk)) => chunk,
            Some(Err(err)) => return Err(ReceiveError::Client(err.to_string())),
        };
        size += chunk.len() as u64;
        if size > max_bytes {
            return Err(ReceiveError::TooLarge(max_bytes));
        }
        hasher.update(&chunk);
        writer.write(chunk).await?;
    }
    Ok(Received {
        size_bytes: size,
        sha256: hex::encode(hasher.finalize()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Storage;

    fn chunks(parts: Vec<&'static [u8]>) -> impl Stream<Item = Result<Bytes, String>> + Unpin {
        futures::stream::iter(parts.into_iter().map(|p| Ok(Bytes::from_static(p))))
    }

    #[tokio::test]
    async fn hashes_sizes_and_stores_what_it_streams() {
        let dir = tempdir();
        let storage = Storage::local(&dir).unwrap();
        let mut writer = storage.writer("tmp/t/a");
        let got = receive(
            chunks(vec![b"hello ", b"world"]),
            &mut writer,
            100,
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        writer.finish().await.unwrap();
        assert_eq!(got.size_bytes, 11);
        assert_eq!(
            got.sha256,
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        assert_eq!(
            &storage.read_all("tmp/t/a").await.unwrap()[..],
            b"hello world"
        );
    }

    #[tokio::test]
    async fn stops_past_the_limit_and_leaves_nothing_behind() {
        let dir = tempdir();
        let storage = Storage::local(&dir).unwrap();
        let mut writer = storage.writer("tmp/t/b");
        let err = receive(
            chunks(vec![b"12345", b"67890", b"x"]),
            &mut writer,
            10,
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, ReceiveError::TooLarge(10)));
        writer.abort().await;
        assert!(!storage.exists("tmp/t/b").await.unwrap());
    }

    #[tokio::test]
    async fn a_broken_client_stream_is_a_client_error() {
        let dir = tempdir();
        let storage = Storage::local(&dir).unwrap();
        let mut writer = storage.writer("tmp/t/c");
        let stream = futures::stream::iter(vec![
            Ok(Bytes::from_static(b"abc")),
            Err("connection reset".to_string()),
        ]);
        let err = receive(stream, &mut writer, 100, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(err, ReceiveError::Client(m) if m.contains("reset")));
    }

    #[tokio::test]
    async fn a_silent_client_times_out() {
        let dir = tempdir();
        let storage = Storage::local(&dir).unwrap();
        let mut writer = storage.writer("tmp/t/d");
        let stream = futures::stream::pending::<Result<Bytes, String>>();
        let err = receive(stream, &mut writer, 100, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(matches!(err, ReceiveError::Idle(_)));
    }

    fn tempdir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("chronicle-receive-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
