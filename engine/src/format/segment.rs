//! Index segments: which blobs each pack written by one session holds, so a new index can
//! be loaded without touching data packs (which may sit in a cold tier).
//!
//! Stored as `index/<segment id>`: `"AMBRINDX" ‖ u16 version ‖ u16 zero ‖ sealed blob`
//! (blob kind 6, id all zero); segment id = BLAKE3 of the whole file. Plaintext:
//! ```text
//! u8  version (1)
//! u32 pack count
//! pack*: id pack id, u8 pack kind, u64 pack length, u32 entry count, entry* (45 bytes,
//!        as in the pack directory)
//! ```

use crate::format::FormatError;
use crate::format::codec::{Reader, Writer, expect_header};
use crate::format::pack::{ENTRY_LEN, PackEntry, PackKind};
use crate::id::PackId;

/// Magic.
pub const SEGMENT_MAGIC: &[u8; 8] = b"AMBRINDX";
/// File version.
pub const SEGMENT_FILE_VERSION: u16 = 1;
const SEGMENT_VERSION: u8 = 1;

/// One pack as a segment records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackRecord {
    /// The pack.
    pub id: PackId,
    /// Data or metadata.
    pub kind: PackKind,
    /// Its length in bytes.
    pub len: u64,
    /// Its blobs.
    pub entries: Vec<PackEntry>,
}

/// Encodes a segment's plaintext.
pub fn encode(packs: &[PackRecord]) -> Vec<u8> {
    let mut w = Writer::new();
    w.u8(SEGMENT_VERSION);
    w.u32(u32::try_from(packs.len()).unwrap_or(u32::MAX));
    for p in packs {
        w.id(p.id.hash());
        w.u8(p.kind as u8);
        w.u64(p.len);
        w.u32(u32::try_from(p.entries.len()).unwrap_or(u32::MAX));
        for e in &p.entries {
            e.encode(&mut w);
        }
    }
    w.into_bytes()
}

/// Decodes a segment's plaintext.
///
/// # Errors
/// [`FormatError`] when malformed.
pub fn decode(bytes: &[u8]) -> Result<Vec<PackRecord>, FormatError> {
    let mut r = Reader::new(bytes);
    let v = r.u8("segment version")?;
    if v != SEGMENT_VERSION {
        return Err(FormatError::UnsupportedVersion {
            object: "index segment",
            version: u16::from(v),
            supported: u16::from(SEGMENT_VERSION),
        });
    }
    let n = r.count32("segment pack count", 45)?;
    let mut packs = Vec::with_capacity(n);
    for _ in 0..n {
        let id = PackId::new(r.id("segment pack id")?);
        let kind = PackKind::from_u8(r.u8("segment pack kind")?)?;
        let len = r.u64("segment pack length")?;
        let m = r.count32("segment entry count", ENTRY_LEN)?;
        let entries = (0..m).map(|_| PackEntry::decode(&mut r)).collect::<Result<_, _>>()?;
        packs.push(PackRecord { id, kind, len, entries });
    }
    r.finish()?;
    Ok(packs)
}

/// Frames a sealed segment for storage.
pub fn frame(sealed: &[u8]) -> Vec<u8> {
    let mut w = Writer::with_capacity(12 + sealed.len());
    w.bytes(SEGMENT_MAGIC);
    w.u16(SEGMENT_FILE_VERSION);
    w.u16(0);
    w.bytes(sealed);
    w.into_bytes()
}

/// Strips the framing.
///
/// # Errors
/// [`FormatError`] for a bad magic or version.
pub fn unframe(bytes: &[u8]) -> Result<&[u8], FormatError> {
    let mut r = Reader::new(bytes);
    expect_header(&mut r, SEGMENT_MAGIC, "index segment", SEGMENT_FILE_VERSION)?;
    r.u16("segment padding")?;
    r.take(r.remaining(), "sealed segment")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::blob::BlobKind;
    use crate::id::{BlobId, Hash32};

    #[test]
    fn round_trip() {
        let packs = vec![PackRecord {
            id: PackId::new(Hash32::from_bytes([1; 32])),
            kind: PackKind::Meta,
            len: 1000,
            entries: vec![PackEntry {
                id: BlobId::new(Hash32::from_bytes([2; 32])),
                kind: BlobKind::Tree,
                offset: 16,
                sealed_len: 100,
                raw_len: 80,
            }],
        }];
        assert_eq!(decode(&encode(&packs)).unwrap(), packs);
        assert!(decode(&[1, 255, 255, 255, 255]).is_err());
    }
}
