//! Streaming zip inspection: finds local file headers anywhere in a stream (so
//! self-extracting archives and junk-prefixed zips, which unzip tools still open, are
//! covered), inflates deflate members and passes stored ones to a nested `ContentScan`.
//!
//! It never seeks and never reads the central directory: each byte is looked at once per
//! nesting level, so the overlapping-entry tricks of some zip bombs gain nothing, and the
//! `ArchiveLimits` bound the rest. What it cannot inspect (encrypted members, methods other
//! than stored/deflate, stored members whose size only follows in a data descriptor) is
//! skipped; stored bytes are still covered by the body signatures of the enclosing stream.

use flate2::{Decompress, FlushDecompress, Status};

use super::stream::{ContentScan, Ctx, Found};

const LOCAL_HEADER_SIG: &[u8; 4] = b"PK\x03\x04";
const LOCAL_HEADER_LEN: usize = 30;
const METHOD_STORED: u16 = 0;
const METHOD_DEFLATE: u16 = 8;
const FLAG_ENCRYPTED: u16 = 1;
const FLAG_DATA_DESCRIPTOR: u16 = 1 << 3;
const ZIP64_EXTRA_ID: u16 = 0x0001;
const INFLATE_BUFFER: usize = 32 * 1024;

pub(crate) const LIMIT_BYTES: &str = "Heuristics.Limits.Exceeded.MaxScanSize";
pub(crate) const LIMIT_MEMBERS: &str = "Heuristics.Limits.Exceeded.MaxFiles";
pub(crate) const LIMIT_DEPTH: &str = "Heuristics.Limits.Exceeded.MaxRecursion";

enum State {
    /// Looking for the next local file header; `pending` holds the last 3 bytes seen.
    Seek,
    /// Collecting a local file header in `pending`.
    Header,
    Stored {
        remaining: u64,
    },
    Inflate,
}

/// Zip members found in one stream whose members sit at `depth`.
pub(crate) struct ZipScan {
    depth: u32,
    state: State,
    pending: Vec<u8>,
    member: Option<Box<ContentScan>>,
    inflater: Option<Decompress>,
    out: Vec<u8>,
}

impl ZipScan {
    pub fn new(depth: u32) -> Self {
        Self {
            depth,
            state: State::Seek,
            pending: Vec::new(),
            member: None,
            inflater: None,
            out: Vec::new(),
        }
    }

    pub fn update(&mut self, ctx: &mut Ctx<'_>, mut data: &[u8]) -> Result<(), Found> {
        while !data.is_empty() {
            data = match self.state {
                State::Seek => self.seek(data),
                State::Header => self.header(ctx, data)?,
                State::Stored { remaining } => {
                    let take = remaining.min(data.len() as u64) as usize;
                    self.feed_member(ctx, &data[..take])?;
                    if remaining == take as u64 {
                        self.end_member(ctx)?;
                    } else {
                        self.state = State::Stored {
                            remaining: remaining - take as u64,
                        };
                    }
                    &data[take..]
                }
                State::Inflate => self.inflate(ctx, data)?,
            };
        }
        Ok(())
    }

    /// The stream ended; a member cut short is scanned as far as it went.
    pub fn finish(mut self, ctx: &mut Ctx<'_>) -> Result<(), Found> {
        match self.member.take() {
            Some(member) => member.finish(ctx),
            None => Ok(()),
        }
    }

    fn seek<'d>(&mut self, data: &'d [u8]) -> &'d [u8] {
        // A signature split across chunks starts inside the ≤ 3 bytes kept from before.
        if !self.pending.is_empty() {
            let mut joined = std::mem::take(&mut self.pending);
            let head = data.len().min(3);
            joined.extend_from_slice(&data[..head]);
            if let Some(at) = memchr::memmem::find(&joined, LOCAL_HEADER_SIG) {
                let from_pending = joined.len() - head - at;
                self.pending = joined[at..at + from_pending].to_vec();
                self.state = State::Header;
                return data;
            }
            if data.len() < 3 {
                // Too short to hold a signature itself: the tail must keep bytes from before.
                self.pending = joined[joined.len().saturating_sub(3)..].to_vec();
                return &[];
            }
        }
        match memchr::memmem::find(data, LOCAL_HEADER_SIG) {
            Some(at) => {
                self.state = State::Header;
                &data[at..]
            }
            None => {
                self.pending = data[data.len().saturating_sub(3)..].to_vec();
                &[]
            }
        }
    }

    /// Collects the fixed part of a local header, then the name and extra field whose
    /// lengths it gives; then starts the member.
    fn header<'d>(&mut self, ctx: &mut Ctx<'_>, mut data: &'d [u8]) -> Result<&'d [u8], Found> {
        loop {
            let need = if self.pending.len() < LOCAL_HEADER_LEN {
                LOCAL_HEADER_LEN
            } else {
                LOCAL_HEADER_LEN
                    + le16(&self.pending, 26) as usize
                    + le16(&self.pending, 28) as usize
            };
            if self.pending.len() >= need {
                let header = LocalHeader::parse(&self.pending);
                self.pending.clear();
                self.start_member(ctx, header)?;
                return Ok(data);
            }
            if data.is_empty() {
                return Ok(data);
            }
            let take = (need - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
    }

    fn start_member(&mut self, ctx: &mut Ctx<'_>, h: LocalHeader) -> Result<(), Found> {
        ctx.budget.members += 1;
        if ctx.budget.members > ctx.limits.max_members {
            return Err(Found(LIMIT_MEMBERS.into()));
        }
        let inspectable = h.flags & FLAG_ENCRYPTED == 0
            && (h.method == METHOD_DEFLATE
                || (h.method == METHOD_STORED && h.compressed_size.is_some()));
        if !inspectable {
            // Look for the next header right away instead of skipping the declared size: a
            // header lying about its size must not hide the members behind it (unzip finds
            // them through the central directory).
            self.state = State::Seek;
            return Ok(());
        }
        if self.depth > ctx.limits.max_depth {
            return Err(Found(LIMIT_DEPTH.into()));
        }
        self.member = Some(Box::new(ContentScan::new(ctx.db, self.depth)));
        self.state = match (h.method, h.compressed_size) {
            (METHOD_STORED, Some(0)) => return self.end_member(ctx),
            (METHOD_STORED, Some(remaining)) => State::Stored { remaining },
            _ => {
                match &mut self.inflater {
                    Some(inflater) => inflater.reset(false),
                    None => self.inflater = Some(Decompress::new(false)),
                }
                self.out.resize(INFLATE_BUFFER, 0);
                State::Inflate
            }
        };
        Ok(())
    }

    fn inflate<'d>(&mut self, ctx: &mut Ctx<'_>, mut data: &'d [u8]) -> Result<&'d [u8], Found> {
        let Some(inflater) = self.inflater.as_mut() else {
            self.state = State::Seek;
            return Ok(data);
        };
        loop {
            let (in_before, out_before) = (inflater.total_in(), inflater.total_out());
            let status = inflater.decompress(data, &mut self.out, FlushDecompress::None);
            let used = (inflater.total_in() - in_before) as usize;
            let produced = (inflater.total_out() - out_before) as usize;
            data = &data[used..];
            if produced > 0 {
                if !ctx.budget.extract(produced, ctx.limits) {
                    return Err(Found(LIMIT_BYTES.into()));
                }
                if let Some(member) = self.member.as_mut() {
                    member.update(ctx, &self.out[..produced])?;
                }
            }
            match status {
                Ok(Status::StreamEnd) => {
                    self.end_member(ctx)?;
                    return Ok(data);
                }
                Ok(_) if used == 0 && produced == 0 => {
                    if data.is_empty() {
                        return Ok(data); // wants more input
                    }
                    // No progress on available input: not a deflate stream after all.
                    self.end_member(ctx)?;
                    return Ok(data);
                }
                Ok(_) => {}
                Err(_) => {
                    // Corrupt member: what was inflated has been scanned; look for the next.
                    self.end_member(ctx)?;
                    return Ok(data);
                }
            }
        }
    }

    fn feed_member(&mut self, ctx: &mut Ctx<'_>, bytes: &[u8]) -> Result<(), Found> {
        if !ctx.budget.extract(bytes.len(), ctx.limits) {
            return Err(Found(LIMIT_BYTES.into()));
        }
        match self.member.as_mut() {
            Some(member) => member.update(ctx, bytes),
            None => Ok(()),
        }
    }

    fn end_member(&mut self, ctx: &mut Ctx<'_>) -> Result<(), Found> {
        self.state = State::Seek;
        match self.member.take() {
            Some(member) => member.finish(ctx),
            None => Ok(()),
        }
    }
}

struct LocalHeader {
    flags: u16,
    method: u16,
    /// `None` when it only follows the data (data descriptor) or a zip64 field is missing.
    compressed_size: Option<u64>,
}

impl LocalHeader {
    /// `bytes` is a complete local header: fixed part, name, extra field.
    fn parse(bytes: &[u8]) -> Self {
        let flags = le16(bytes, 6);
        let method = le16(bytes, 8);
        let size32 = le32(bytes, 18);
        let uncompressed32 = le32(bytes, 22);
        let name_len = le16(bytes, 26) as usize;
        let extra = &bytes[LOCAL_HEADER_LEN + name_len..];
        let compressed_size = if size32 == u32::MAX {
            zip64_compressed_size(extra, uncompressed32 == u32::MAX)
        } else if flags & FLAG_DATA_DESCRIPTOR != 0 && size32 == 0 {
            None
        } else {
            Some(u64::from(size32))
        };
        Self {
            flags,
            method,
            compressed_size,
        }
    }
}

/// The compressed size from a zip64 extended-information field; it follows the
/// uncompressed size when that one is escaped too.
fn zip64_compressed_size(mut extra: &[u8], uncompressed_escaped: bool) -> Option<u64> {
    while extra.len() >= 4 {
        let (id, len) = (le16(extra, 0), le16(extra, 2) as usize);
        let body = extra.get(4..4 + len)?;
        if id == ZIP64_EXTRA_ID {
            let at = if uncompressed_escaped { 8 } else { 0 };
            let field = body.get(at..at + 8)?;
            return Some(u64::from_le_bytes(field.try_into().ok()?));
        }
        extra = &extra[4 + len..];
    }
    None
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
