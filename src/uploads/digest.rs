//! The SHA-256 of an upload's bytes: carried from chunk to chunk in the upload's events
//! (so completing a resumable upload does not read it back), or computed from the file
//! when no running state was carried.

use std::path::Path;

use sha2::digest::common::hazmat::{SerializableState, SerializedState};
use sha2::{Digest, Sha256};

/// Read size when hashing a file back.
const READ_BUFFER: usize = 1024 * 1024;

/// The SHA-256 state carried from PATCH to PATCH in the upload's events.
pub fn save_sha256(hasher: &Sha256) -> String {
    hex::encode(hasher.serialize())
}

/// The state `save_sha256` wrote; `None` if it does not decode (the upload is then
/// hashed by reading it back at completion, as before states were carried).
pub fn resume_sha256(state: &str) -> Option<Sha256> {
    let bytes = hex::decode(state).ok()?;
    let serialized = SerializedState::<Sha256>::try_from(bytes.as_slice()).ok()?;
    Sha256::deserialize(&serialized).ok()
}

/// SHA-256 of the whole file, for the File pipeline's `Uploaded` when no running hash
/// was carried across the PATCHes (see `save_sha256`).
pub async fn sha256_of(path: &Path) -> std::io::Result<String> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut file = std::fs::File::open(path)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; READ_BUFFER];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        Ok(hex::encode(hasher.finalize()))
    })
    .await
    .map_err(std::io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_state_resumes_where_it_stopped() {
        let mut running = Sha256::new();
        running.update(b"first chunk, ");
        let mut resumed = resume_sha256(&save_sha256(&running)).unwrap();
        resumed.update(b"second chunk");
        assert_eq!(
            resumed.finalize(),
            Sha256::digest(b"first chunk, second chunk")
        );
        assert!(resume_sha256("not hex").is_none());
    }
}
