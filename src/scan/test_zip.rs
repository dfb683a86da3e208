//! A minimal zip writer for tests (stored and deflated members, optional data
//! descriptors), producing archives that `unzip` and clamd accept. Shared by the unit tests
//! and, through `#[path]`, by tests/integration/scan.rs — no zip fixtures with EICAR in
//! the repository for desktop virus scanners to quarantine.

#![allow(dead_code)]

use std::io::Write;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Method {
    Stored,
    Deflated,
}

pub struct Member<'a> {
    pub name: &'a str,
    pub bytes: &'a [u8],
    pub method: Method,
    /// Sizes and CRC after the data (general purpose flag bit 3), as streaming writers do.
    pub data_descriptor: bool,
}

impl<'a> Member<'a> {
    pub fn new(name: &'a str, bytes: &'a [u8], method: Method) -> Self {
        Self {
            name,
            bytes,
            method,
            data_descriptor: false,
        }
    }
}

pub fn zip(members: &[Member<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for m in members {
        let mut crc = flate2::Crc::new();
        crc.update(m.bytes);
        let crc = crc.sum();
        let (method, data) = match m.method {
            Method::Stored => (0u16, m.bytes.to_vec()),
            Method::Deflated => {
                let mut enc =
                    flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
                enc.write_all(m.bytes).unwrap();
                (8u16, enc.finish().unwrap())
            }
        };
        let flags: u16 = if m.data_descriptor { 1 << 3 } else { 0 };
        let offset = out.len() as u32;
        let (h_crc, h_csize, h_usize) = if m.data_descriptor {
            (0, 0, 0)
        } else {
            (crc, data.len() as u32, m.bytes.len() as u32)
        };
        out.extend_from_slice(b"PK\x03\x04");
        out.extend_from_slice(&20u16.to_le_bytes());
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&method.to_le_bytes());
        out.extend_from_slice(&[0, 0, 0x21, 0]); // time, date (1980-01-01)
        out.extend_from_slice(&h_crc.to_le_bytes());
        out.extend_from_slice(&h_csize.to_le_bytes());
        out.extend_from_slice(&h_usize.to_le_bytes());
        out.extend_from_slice(&(m.name.len() as u16).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(m.name.as_bytes());
        out.extend_from_slice(&data);
        if m.data_descriptor {
            out.extend_from_slice(b"PK\x07\x08");
            out.extend_from_slice(&crc.to_le_bytes());
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(&(m.bytes.len() as u32).to_le_bytes());
        }
        central.extend_from_slice(b"PK\x01\x02");
        central.extend_from_slice(&20u16.to_le_bytes()); // made by
        central.extend_from_slice(&20u16.to_le_bytes()); // needed
        central.extend_from_slice(&flags.to_le_bytes());
        central.extend_from_slice(&method.to_le_bytes());
        central.extend_from_slice(&[0, 0, 0x21, 0]);
        central.extend_from_slice(&crc.to_le_bytes());
        central.extend_from_slice(&(data.len() as u32).to_le_bytes());
        central.extend_from_slice(&(m.bytes.len() as u32).to_le_bytes());
        central.extend_from_slice(&(m.name.len() as u16).to_le_bytes());
        central.extend_from_slice(&[0; 8]); // extra, comment, disk, internal attrs
        central.extend_from_slice(&[0; 4]); // external attrs
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(m.name.as_bytes());
    }
    let central_offset = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(b"PK\x05\x06");
    out.extend_from_slice(&[0; 4]); // disk numbers
    out.extend_from_slice(&(members.len() as u16).to_le_bytes());
    out.extend_from_slice(&(members.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&central_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}
