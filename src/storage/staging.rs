//! Staging files of the local store. `object_store`'s local backend writes an object to
//! `{path}#{n}` and renames it into place when the write completes; its `list()` skips
//! those names. A process killed mid-write (kill -9 of the API during an upload) leaves
//! the staging file behind, invisible to every listing, forever. Nothing ever points at
//! a staging file (objects only become visible by the rename), so one that has not been
//! written to for the sweep's age limit is an orphan: a live write touches it with
//! every part, and an upload that sends nothing for 60 s is cut off anyway.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::Storage;

impl Storage {
    /// Deletes the local store's staging files under `prefix` last written before
    /// `before`; returns how many. S3 has none (an abandoned multipart upload is removed
    /// by the bucket's `AbortIncompleteMultipartUpload` rule).
    pub async fn remove_stale_staging(
        &self,
        prefix: &str,
        before: SystemTime,
    ) -> std::io::Result<usize> {
        let Some(root) = self.local_root.clone() else {
            return Ok(0);
        };
        let dir = root.join(prefix);
        tokio::task::spawn_blocking(move || {
            let mut removed = 0;
            for path in stale_staging_files(&dir, before)? {
                match std::fs::remove_file(&path) {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(removed)
        })
        .await
        .map_err(std::io::Error::other)?
    }
}

/// `name#digits`: the local store's staging name (an object name may contain `#`, but
/// then not followed by digits only: the store refuses such names).
pub(super) fn is_staging_name(name: &str) -> bool {
    match name.rsplit_once('#') {
        Some((object, suffix)) => {
            !object.is_empty() && !suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

fn stale_staging_files(dir: &Path, before: SystemTime) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file()
                && entry.file_name().to_str().is_some_and(is_staging_name)
                && entry.metadata()?.modified()? < before
            {
                found.push(entry.path());
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_digit_suffixes_are_staging_names() {
        assert!(is_staging_name("0193-upload#1"));
        assert!(is_staging_name("abc#12"));
        assert!(!is_staging_name("abc"));
        assert!(!is_staging_name("abc#"));
        assert!(!is_staging_name("abc#1x"));
        assert!(!is_staging_name("#1"));
    }

    #[tokio::test]
    async fn stale_staging_files_go_and_objects_stay() {
        let dir = std::env::temp_dir().join(format!("staging-{}", uuid::Uuid::now_v7()));
        let storage = Storage::local(&dir).unwrap();
        storage.put("tmp/t/object", b"kept".to_vec()).await.unwrap();
        std::fs::write(dir.join("tmp/t/upload#1"), b"partial").unwrap();
        // Younger than the limit: a write may still be running.
        let past = SystemTime::now() - std::time::Duration::from_secs(60);
        assert_eq!(storage.remove_stale_staging("tmp", past).await.unwrap(), 0);
        let future = SystemTime::now() + std::time::Duration::from_secs(60);
        assert_eq!(
            storage.remove_stale_staging("tmp", future).await.unwrap(),
            1
        );
        assert!(!dir.join("tmp/t/upload#1").exists());
        assert!(storage.exists("tmp/t/object").await.unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
