//! Signature databases for the builtin scanner: a documented subset of ClamAV's formats.
//!
//! - `.hdb`: `md5:size:name` — MD5 of the whole input (or archive member);
//! - `.hsb`: `sha1-or-sha256:size:name` — the same with SHA-1 (40 hex) or SHA-256 (64 hex);
//!   `size` may be `*` (any size) in both;
//! - `.ndb`: `name:target:offset:hexsig` — `target` 0 (any file), `offset` `*` (anywhere)
//!   or a decimal absolute offset; `hexsig` is hex bytes with `??` (any byte), `a?`/`?a`
//!   (nibble) wildcards and `{n}` (exactly n bytes).
//!
//! Trailing ClamAV functionality-level fields are accepted and ignored; `#` starts a
//! comment line. Anything else (other targets, `*`/`{n-m}`/alternatives in patterns, EOF-
//! or entry-point-relative offsets) is refused with `file:line: reason`, because silently
//! dropping a signature would weaken the scan without anyone noticing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use aho_corasick::AhoCorasick;

use super::pattern::{BodyOffset, BodySignature, parse_body};

/// The project's own signatures (EICAR test signatures), compiled in so the builtin
/// scanner works with zero setup. The same files are what CI's clamd loads.
const BUILTIN_FILES: [(&str, &str); 3] = [
    (
        "chronicle.hdb",
        include_str!("../../signatures/chronicle.hdb"),
    ),
    (
        "chronicle.hsb",
        include_str!("../../signatures/chronicle.hsb"),
    ),
    (
        "chronicle.ndb",
        include_str!("../../signatures/chronicle.ndb"),
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    #[error("{file}:{line}: {reason}")]
    Malformed {
        file: String,
        line: usize,
        reason: String,
    },
    #[error("cannot read signatures from {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug)]
struct HashEntry {
    size: Option<u64>,
    name: String,
}

/// Parsed, ready-to-match signatures. Built once at start-up and shared read-only.
#[derive(Debug)]
pub struct SignatureDb {
    /// Keyed by digest bytes; MD5/SHA-1/SHA-256 digests differ in length, so one map holds all.
    hashes: HashMap<Vec<u8>, Vec<HashEntry>>,
    /// How far into a stream each digest (MD5, SHA-1, SHA-256) can still match.
    pub(crate) md5: HashReach,
    pub(crate) sha1: HashReach,
    pub(crate) sha256: HashReach,
    pub(crate) body: Vec<BodySignature>,
    /// One automaton over the distinct anchors of the `offset *` signatures…
    pub(crate) anchors: Option<AhoCorasick>,
    /// …and, per anchor pattern id, the signatures that share that anchor.
    pub(crate) anchor_sigs: Vec<Vec<usize>>,
    /// Signatures at a fixed offset (index into `body`).
    pub(crate) fixed: Vec<usize>,
    pub(crate) max_body_len: usize,
}

impl SignatureDb {
    /// The compiled-in signatures plus every `.hdb`/`.hsb`/`.ndb` file in `extra_dir`.
    /// Returns the database and the names of files in `extra_dir` it did not read.
    pub fn load(extra_dir: Option<&Path>) -> Result<(Self, Vec<String>), SignatureError> {
        let mut builder = Builder::default();
        for (name, text) in BUILTIN_FILES {
            builder.add_file(name, text)?;
        }
        let mut ignored = Vec::new();
        if let Some(dir) = extra_dir {
            let io_err = |source| SignatureError::Io {
                path: dir.to_path_buf(),
                source,
            };
            let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
                .map_err(io_err)?
                .map(|entry| entry.map(|e| e.path()))
                .collect::<Result<_, _>>()
                .map_err(io_err)?;
            paths.sort();
            for path in paths {
                let name = path.file_name().unwrap_or_default().to_string_lossy();
                if FileFormat::of(&name).is_none() || !path.is_file() {
                    ignored.push(name.into_owned());
                    continue;
                }
                let text = std::fs::read_to_string(&path).map_err(|source| SignatureError::Io {
                    path: path.clone(),
                    source,
                })?;
                builder.add_file(&path.display().to_string(), &text)?;
            }
        }
        Ok((builder.build(), ignored))
    }

    /// Parses signature files given as `(file name, contents)`; the extension picks the format.
    pub fn from_files(files: &[(&str, &str)]) -> Result<Self, SignatureError> {
        let mut builder = Builder::default();
        for (name, text) in files {
            builder.add_file(name, text)?;
        }
        Ok(builder.build())
    }

    /// Number of signatures loaded.
    pub fn len(&self) -> usize {
        self.body.len() + self.hashes.values().map(Vec::len).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The name of a hash signature matching `digest` of an input of `size` bytes.
    pub(crate) fn hash_match(&self, digest: &[u8], size: u64) -> Option<&str> {
        self.hashes
            .get(digest)?
            .iter()
            .find(|e| e.size.is_none_or(|s| s == size))
            .map(|e| e.name.as_str())
    }
}

/// How long a stream a hash signature type can match. Hash signatures name the size of
/// what they match (or `*`), so once a stream is longer than every size named for a digest,
/// no signature of that digest can match it and hashing the rest would be wasted work: a
/// large upload is then hashed only for its first bytes, and the scan runs at the speed of
/// the body-pattern search.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum HashReach {
    /// No signature uses this digest.
    #[default]
    Unused,
    /// Every signature of this digest names a size, the largest being this.
    UpTo(u64),
    /// Some signature matches any size (`*`).
    Any,
}

impl HashReach {
    fn widen(&mut self, size: Option<u64>) {
        *self = match (*self, size) {
            (Self::Any, _) | (_, None) => Self::Any,
            (Self::Unused, Some(s)) => Self::UpTo(s),
            (Self::UpTo(m), Some(s)) => Self::UpTo(m.max(s)),
        };
    }

    /// Whether a stream of `len` bytes (or more) may still match a signature.
    pub fn covers(self, len: u64) -> bool {
        match self {
            Self::Unused => false,
            Self::UpTo(max) => len <= max,
            Self::Any => true,
        }
    }
}

#[derive(Clone, Copy)]
enum FileFormat {
    Md5,
    Sha,
    Body,
}

impl FileFormat {
    fn of(file_name: &str) -> Option<Self> {
        let ext = file_name.rsplit_once('.')?.1.to_ascii_lowercase();
        match ext.as_str() {
            "hdb" => Some(Self::Md5),
            "hsb" => Some(Self::Sha),
            "ndb" => Some(Self::Body),
            _ => None,
        }
    }
}

#[derive(Default)]
struct Builder {
    hashes: HashMap<Vec<u8>, Vec<HashEntry>>,
    reach: [HashReach; 3],
    body: Vec<BodySignature>,
}

impl Builder {
    fn add_file(&mut self, file: &str, text: &str) -> Result<(), SignatureError> {
        let format = FileFormat::of(file).ok_or_else(|| SignatureError::Malformed {
            file: file.to_string(),
            line: 0,
            reason: "unknown signature file type (expected .hdb, .hsb or .ndb)".into(),
        })?;
        for (index, raw) in text.lines().enumerate() {
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            if line.starts_with('#') {
                continue;
            }
            let parsed = match format {
                FileFormat::Md5 => self.add_hash(line, &[32]),
                FileFormat::Sha => self.add_hash(line, &[40, 64]),
                FileFormat::Body => parse_body(line).map(|sig| self.body.push(sig)),
            };
            parsed.map_err(|reason| SignatureError::Malformed {
                file: file.to_string(),
                line: index + 1,
                reason,
            })?;
        }
        Ok(())
    }

    fn add_hash(&mut self, line: &str, hex_lens: &[usize]) -> Result<(), String> {
        let fields: Vec<&str> = line.split(':').collect();
        if !(3..=5).contains(&fields.len()) {
            return Err(format!(
                "expected hash:size:name, got {} field(s)",
                fields.len()
            ));
        }
        let hash = fields[0];
        if !hex_lens.contains(&hash.len()) {
            return Err(format!(
                "hash must be {} hex digits, got {}",
                hex_lens
                    .iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join(" or "),
                hash.len()
            ));
        }
        let digest = hex::decode(hash).map_err(|_| format!("hash {hash:?} is not hexadecimal"))?;
        let size = match fields[1] {
            "*" => None,
            s => Some(
                s.parse::<u64>()
                    .map_err(|_| format!("size must be a number of bytes or *, got {s:?}"))?,
            ),
        };
        let name = parse_name(fields[2])?;
        check_flevels(&fields[3..])?;
        let slot = match digest.len() {
            16 => 0,
            20 => 1,
            _ => 2,
        };
        self.reach[slot].widen(size);
        self.hashes
            .entry(digest)
            .or_default()
            .push(HashEntry { size, name });
        Ok(())
    }

    fn build(self) -> SignatureDb {
        let mut anchor_bytes: Vec<Vec<u8>> = Vec::new();
        let mut anchor_sigs: Vec<Vec<usize>> = Vec::new();
        let mut fixed = Vec::new();
        for (i, sig) in self.body.iter().enumerate() {
            match sig.offset {
                BodyOffset::At(_) => fixed.push(i),
                BodyOffset::Anywhere => {
                    let anchor: Vec<u8> = sig.pattern
                        [sig.anchor_at..sig.anchor_at + sig.anchor_len]
                        .iter()
                        .map(|p| p.value)
                        .collect();
                    match anchor_bytes.iter().position(|a| *a == anchor) {
                        Some(pos) => anchor_sigs[pos].push(i),
                        None => {
                            anchor_bytes.push(anchor);
                            anchor_sigs.push(vec![i]);
                        }
                    }
                }
            }
        }
        // Anchors are at most a few thousand short byte strings: building cannot fail.
        let anchors = (!anchor_bytes.is_empty())
            .then(|| AhoCorasick::new(&anchor_bytes).expect("anchor automaton"));
        let max_body_len = self.body.iter().map(|s| s.pattern.len()).max().unwrap_or(0);
        SignatureDb {
            hashes: self.hashes,
            md5: self.reach[0],
            sha1: self.reach[1],
            sha256: self.reach[2],
            body: self.body,
            anchors,
            anchor_sigs,
            fixed,
            max_body_len,
        }
    }
}

pub(super) fn parse_name(name: &str) -> Result<String, String> {
    if name.is_empty() {
        return Err("signature name is empty".into());
    }
    if name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!(
            "signature name {name:?} contains whitespace or control characters"
        ));
    }
    Ok(name.to_string())
}

/// ClamAV's optional min/max functionality levels: numbers or empty; we ignore them.
pub(super) fn check_flevels(fields: &[&str]) -> Result<(), String> {
    for f in fields {
        if !f.is_empty() && f.parse::<u32>().is_err() {
            return Err(format!("functionality level must be a number, got {f:?}"));
        }
    }
    Ok(())
}
