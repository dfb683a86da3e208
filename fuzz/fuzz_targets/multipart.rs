//! The multipart receiver of `POST /v1/files`: boundary from a fuzzed Content-Type, the
//! body in fuzzed-size pieces, the file part streamed into a real local store.
//! Input: `[limit selector][piece size][content type]\n[body]`.
//! Checks: no panic; a refusal is a 4xx and leaves no bytes behind; an accepted file is
//! stored whole, within the limit, with the SHA-256 reported.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use bytes::Bytes;
use chronicle::api::fuzzing;
use chronicle::storage::Storage;
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

struct Env {
    rt: tokio::runtime::Runtime,
    storage: Storage,
    root: PathBuf,
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        // tmpfs when there is one: the local store fsyncs every object.
        let base = Path::new("/dev/shm");
        let base = if base.is_dir() {
            base.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let root = base.join(format!("chronicle-fuzz-multipart-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        Env {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            storage: Storage::local(&root).unwrap(),
            root,
        }
    })
}

/// Regular files under `dir` (staging files included).
fn files_under(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let path = e.path();
            if path.is_dir() { files_under(&path) } else { 1 }
        })
        .sum()
}

const LIMITS: [u64; 4] = [0, 16, 1024, 1 << 20];

fuzz_target!(|data: &[u8]| {
    let [limit, piece, rest @ ..] = data else {
        return;
    };
    let Some(newline) = rest.iter().position(|&b| b == b'\n') else {
        return;
    };
    let (content_type, body) = (&rest[..newline], &rest[newline + 1..]);
    let max = LIMITS[usize::from(*limit) % LIMITS.len()];
    let piece = if *piece == 0 {
        body.len().max(1)
    } else {
        usize::from(*piece)
    };
    let pieces: Vec<Bytes> = body.chunks(piece).map(Bytes::copy_from_slice).collect();
    let env = env();
    match env
        .rt
        .block_on(fuzzing::multipart(&env.storage, content_type, pieces, max))
    {
        Ok(fields) => {
            let stored = env
                .rt
                .block_on(env.storage.read_all(&fields.temp_key))
                .expect("an accepted file's bytes are stored");
            assert_eq!(stored.len() as u64, fields.size_bytes);
            assert!(fields.size_bytes <= max, "{} > {max}", fields.size_bytes);
            assert_eq!(hex::encode(Sha256::digest(&stored)), fields.sha256);
            env.rt
                .block_on(env.storage.delete(&fields.temp_key))
                .unwrap();
        }
        Err(err) => {
            let status = err.status();
            assert!(status.is_client_error(), "{status}: {err}");
        }
    }
    assert_eq!(
        files_under(&env.root),
        0,
        "bytes left behind in {:?}",
        env.root
    );
});
