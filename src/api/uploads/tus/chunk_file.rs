//! Where a chunk's bytes go on local disk: the aligned middle of the chunk with
//! `O_DIRECT`, straight from a reused buffer to the device; the unaligned head and tail
//! (less than one block each) through the page cache.
//!
//! Why not the page cache alone: a PATCH is answered only once its bytes are durable,
//! so every byte is written back within the request anyway, and the page cache only adds
//! a copy into freshly allocated pages. On the project's virtual machines the speed of
//! that copy swings between two regimes (measured with `dd` and a Python probe: 1 GiB in
//! 8 MiB chunks, each `fdatasync`ed, at 495–1,645 MB/s buffered against 1,656–1,796 MB/s
//! with `O_DIRECT`, four alternated runs), and in the slow one a PATCH's receive time
//! tripled (docs/benchmarks.md, the tus section). Direct writes take the page cache out
//! of the path: the device reads the block from memory this process keeps reusing.
//!
//! `O_DIRECT` needs the memory, the file offset and the length aligned to the device's
//! logical block; [`ALIGN`] (4 KiB) covers every common one. A chunk may start and end
//! anywhere, so the bytes before the first aligned offset and after the last go through
//! the page cache. They cover different pages than the direct writes (the page size is
//! also 4 KiB), so the two never overlap, and the closing `fdatasync` makes both durable,
//! with the file's new size. Where `O_DIRECT` is refused (a filesystem without it, such
//! as tmpfs on older kernels, or a stricter alignment), the writer falls back to the page
//! cache for the rest of the chunk: slower, never wrong.
//!
//! No `unsafe` is needed: the aligned region is a sub-slice of an ordinary `Vec`, found
//! with `align_offset`.

use std::fs::File;
use std::io;
use std::num::NonZeroU64;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

/// The alignment of direct writes: memory, file offset and length.
pub(super) const ALIGN: usize = 4096;
/// Bytes staged before one direct write: a multiple of [`ALIGN`].
const STAGE: usize = 1024 * 1024;
/// Bytes written through the page cache before the writer asks the kernel to start their
/// writeback (only when direct writes are not available).
const WRITEBACK_EVERY: u64 = 4 * 1024 * 1024;

/// Appends to one temp file from `pos` on.
pub(super) struct ChunkFile {
    buffered: File,
    direct: Option<File>,
    /// Where the next byte goes (after what is staged).
    pos: u64,
    /// A heap buffer; `stage_at..stage_at + STAGE` is its aligned region.
    memory: Vec<u8>,
    stage_at: usize,
    /// How many bytes of the aligned region are filled; they belong at `pos`.
    staged: usize,
    /// Buffered bytes from here on have not been hinted for writeback yet.
    unhinted_from: u64,
}

impl ChunkFile {
    /// `buffered` is open for writing; `path` is the same file, opened again for direct
    /// writes if the filesystem allows it.
    pub(super) fn new(buffered: File, path: &Path, pos: u64) -> Self {
        let direct = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32)
            .open(path)
            .ok();
        Self::with(buffered, direct, pos)
    }

    /// Page cache only (the fallback, and what tests compare against).
    #[cfg(test)]
    pub(super) fn buffered_only(buffered: File, pos: u64) -> Self {
        Self::with(buffered, None, pos)
    }

    fn with(buffered: File, direct: Option<File>, pos: u64) -> Self {
        let memory = vec![0; STAGE + ALIGN];
        let stage_at = memory.as_ptr().align_offset(ALIGN);
        ChunkFile {
            buffered,
            direct,
            pos,
            memory,
            stage_at,
            staged: 0,
            unhinted_from: pos,
        }
    }

    /// Whether direct writes are in use (they stop after the first refusal).
    #[cfg(test)]
    pub(super) fn is_direct(&self) -> bool {
        self.direct.is_some()
    }

    /// Appends `bytes`.
    pub(super) fn write(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        if self.direct.is_none() {
            return self.write_buffered(bytes);
        }
        if self.staged == 0 && !self.pos.is_multiple_of(ALIGN as u64) {
            // The head: up to the first aligned offset, through the page cache.
            let to_boundary = ALIGN - (self.pos % ALIGN as u64) as usize;
            let head = to_boundary.min(bytes.len());
            self.write_buffered(&bytes[..head])?;
            bytes = &bytes[head..];
        }
        while !bytes.is_empty() {
            let n = (STAGE - self.staged).min(bytes.len());
            let at = self.stage_at + self.staged;
            self.memory[at..at + n].copy_from_slice(&bytes[..n]);
            self.staged += n;
            bytes = &bytes[n..];
            if self.staged == STAGE {
                self.flush_stage()?;
            }
        }
        Ok(())
    }

    /// Writes what is staged and makes the file durable: the data and the size.
    pub(super) fn sync(mut self) -> io::Result<()> {
        self.flush_stage()?;
        self.buffered.sync_data()
    }

    /// Writes the staged bytes: the aligned part directly, the rest (the chunk's tail,
    /// less than one block) through the page cache.
    fn flush_stage(&mut self) -> io::Result<()> {
        let staged = std::mem::take(&mut self.staged);
        let region = self.stage_at..self.stage_at + staged;
        let aligned = staged - staged % ALIGN;
        let mut done = 0;
        if let Some(direct) = &self.direct {
            while done < aligned {
                let from = self.stage_at + done;
                match direct.write_at(&self.memory[from..self.stage_at + aligned], self.pos) {
                    Ok(n) if n > 0 && n.is_multiple_of(ALIGN) => {
                        done += n;
                        self.pos += n as u64;
                        self.unhinted_from = self.pos;
                    }
                    // Refused, or a short write that leaves the rest unaligned: the page
                    // cache takes it from here.
                    Ok(_) | Err(_) => {
                        self.direct = None;
                        break;
                    }
                }
            }
        }
        let rest = region.start + done..region.end;
        let bytes = std::mem::take(&mut self.memory);
        let result = self.write_buffered(&bytes[rest]);
        self.memory = bytes;
        result
    }

    fn write_buffered(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.buffered.write_all_at(bytes, self.pos)?;
        self.pos += bytes.len() as u64;
        if self.pos - self.unhinted_from >= WRITEBACK_EVERY {
            // Start writeback without waiting (posix_fadvise(DONTNEED) on Linux): the
            // closing sync then has less left to wait for. Advice only.
            let _ = rustix::fs::fadvise(
                &self.buffered,
                self.unhinted_from,
                NonZeroU64::new(self.pos - self.unhinted_from),
                rustix::fs::Advice::DontNeed,
            );
            self.unhinted_from = self.pos;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(initial: &[u8]) -> (std::path::PathBuf, File) {
        // Under the target directory, not /tmp: /tmp may be a tmpfs without O_DIRECT,
        // and these tests are about the direct path.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/chunk-file-tests");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(uuid::Uuid::now_v7().to_string());
        std::fs::write(&path, initial).unwrap();
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        (path, file)
    }

    /// Bytes that differ at every offset, so a block written in the wrong place shows.
    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
            .collect()
    }

    /// Chunks starting and ending off the block boundaries, in pieces of awkward sizes,
    /// after bytes already in the file: the file holds exactly what was sent, in order,
    /// and the direct path was used for the middle.
    #[test]
    fn unaligned_chunks_land_in_order_with_the_middle_written_directly() {
        let head = pattern(ALIGN + 1_000, 7);
        let (path, file) = temp_file(&head);
        let mut expected = head.clone();
        let mut writer = ChunkFile::new(file, &path, head.len() as u64);
        let direct_available = writer.is_direct();
        for (i, piece) in [1usize, 3_095, 16_384, 1_000_003, 777, 2 * STAGE + 5]
            .into_iter()
            .enumerate()
        {
            let bytes = pattern(piece, i as u8);
            writer.write(&bytes).unwrap();
            expected.extend_from_slice(&bytes);
        }
        let still_direct = writer.is_direct();
        writer.sync().unwrap();
        // A second chunk continues at an unaligned offset, as the next PATCH would.
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let mut writer = ChunkFile::new(file, &path, expected.len() as u64);
        let bytes = pattern(STAGE + 12_345, 99);
        writer.write(&bytes).unwrap();
        expected.extend_from_slice(&bytes);
        writer.sync().unwrap();

        let on_disk = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(on_disk.len(), expected.len());
        assert!(on_disk == expected, "the file differs from what was sent");
        if direct_available {
            assert!(
                still_direct,
                "a direct write was refused on this filesystem"
            );
        }
    }

    /// Without direct writes the same bytes land the same way.
    #[test]
    fn the_page_cache_fallback_writes_the_same_bytes() {
        let (path, file) = temp_file(b"abc");
        let mut writer = ChunkFile::buffered_only(file, 3);
        let mut expected = b"abc".to_vec();
        for i in 0..7u8 {
            let bytes = pattern(STAGE + 333, i);
            writer.write(&bytes).unwrap();
            expected.extend_from_slice(&bytes);
        }
        assert!(!writer.is_direct());
        writer.sync().unwrap();
        let on_disk = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(on_disk == expected, "the file differs from what was sent");
    }
}
