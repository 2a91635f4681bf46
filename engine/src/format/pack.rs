//! Pack layout: header, sealed blobs in shuffled order, sealed directory, footer.
//!
//! ```text
//! 0      8   "AMBRPACK"
//! 8      2   version (1)
//! 10     1   pack kind (1 data, 2 metadata)
//! 11     5   zero
//! 16     ..  sealed blobs, back to back
//! ..     n   sealed directory (blob kind 4, id all zero)
//! end-16 4   n, the sealed directory's length
//! end-12 4   zero
//! end-8  8   "AMBRPEND"
//! ```

use crate::crypto::SealKey;
use crate::error::{CryptoError, Error};
use crate::format::FormatError;
use crate::format::blob::{self, BlobKind};
use crate::format::codec::{Reader, Writer, expect_header};
use crate::hash::plain_hash;
use crate::id::{BlobId, Hash32, PackId};

/// Pack magic.
pub const PACK_MAGIC: &[u8; 8] = b"AMBRPACK";
/// Footer magic.
pub const PACK_END_MAGIC: &[u8; 8] = b"AMBRPEND";
/// Current pack version.
pub const PACK_VERSION: u16 = 1;
/// Header bytes.
pub const HEADER_LEN: usize = 16;
/// Footer bytes.
pub const FOOTER_LEN: usize = 16;
/// Bytes of one directory entry.
pub const ENTRY_LEN: usize = 32 + 1 + 4 + 4 + 4;
/// Version byte of the directory plaintext.
const DIRECTORY_VERSION: u8 = 1;
/// Largest pack accepted (4 GiB offsets are u32).
pub const MAX_PACK_LEN: u64 = u32::MAX as u64;

const _: () = assert!(HEADER_LEN == 8 + 2 + 1 + 5);
const _: () = assert!(FOOTER_LEN == 4 + 4 + 8);

/// Data packs hold content; metadata packs hold trees and chunk lists and stay hot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PackKind {
    /// Content chunks.
    Data = 1,
    /// Tree and chunk-list nodes.
    Meta = 2,
}

impl PackKind {
    /// Decodes the tag.
    ///
    /// # Errors
    /// [`FormatError::Invalid`].
    pub fn from_u8(v: u8) -> Result<Self, FormatError> {
        match v {
            1 => Ok(PackKind::Data),
            2 => Ok(PackKind::Meta),
            other => Err(FormatError::invalid("pack kind", format!("unknown tag {other}"))),
        }
    }
    /// The pack kind a blob kind goes to.
    pub fn for_blob(kind: BlobKind) -> Self {
        if kind.is_data() { PackKind::Data } else { PackKind::Meta }
    }
    /// Store prefix ("data" or "meta").
    pub fn prefix(self) -> &'static str {
        match self {
            PackKind::Data => "data",
            PackKind::Meta => "meta",
        }
    }
}

/// Where one blob sits in a pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackEntry {
    /// The blob's id.
    pub id: BlobId,
    /// The blob's kind.
    pub kind: BlobKind,
    /// Offset of the sealed blob from the start of the pack.
    pub offset: u32,
    /// Length of the sealed blob.
    pub sealed_len: u32,
    /// Length of the plaintext.
    pub raw_len: u32,
}

impl PackEntry {
    pub(crate) fn encode(&self, w: &mut Writer) {
        w.id(self.id.hash());
        w.u8(self.kind as u8);
        w.u32(self.offset);
        w.u32(self.sealed_len);
        w.u32(self.raw_len);
    }
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, FormatError> {
        Ok(PackEntry {
            id: BlobId::new(r.id("entry id")?),
            kind: BlobKind::from_u8(r.u8("entry kind")?)?,
            offset: r.u32("entry offset")?,
            sealed_len: r.u32("entry length")?,
            raw_len: r.u32("entry raw length")?,
        })
    }
}

/// Encodes the 16-byte header.
pub fn encode_header(kind: PackKind) -> [u8; HEADER_LEN] {
    let mut w = Writer::with_capacity(HEADER_LEN);
    w.bytes(PACK_MAGIC);
    w.u16(PACK_VERSION);
    w.u8(kind as u8);
    w.bytes(&[0u8; 5]);
    let mut out = [0u8; HEADER_LEN];
    out.copy_from_slice(&w.into_bytes());
    out
}

/// Decodes the header.
///
/// # Errors
/// [`FormatError`] for a bad magic, version or kind.
pub fn decode_header(bytes: &[u8]) -> Result<PackKind, FormatError> {
    let mut r = Reader::new(bytes);
    expect_header(&mut r, PACK_MAGIC, "pack", PACK_VERSION)?;
    let kind = PackKind::from_u8(r.u8("pack kind")?)?;
    r.take(5, "pack header padding")?;
    Ok(kind)
}

/// Encodes the footer for a directory of `dir_len` sealed bytes.
pub fn encode_footer(dir_len: u32) -> [u8; FOOTER_LEN] {
    let mut w = Writer::with_capacity(FOOTER_LEN);
    w.u32(dir_len);
    w.u32(0);
    w.bytes(PACK_END_MAGIC);
    let mut out = [0u8; FOOTER_LEN];
    out.copy_from_slice(&w.into_bytes());
    out
}

/// Decodes the footer; returns the sealed directory's length.
///
/// # Errors
/// [`FormatError`] when the footer is malformed.
pub fn decode_footer(bytes: &[u8]) -> Result<u32, FormatError> {
    let mut r = Reader::new(bytes);
    let len = r.u32("footer directory length")?;
    r.u32("footer padding")?;
    if r.take(8, "footer magic")? != PACK_END_MAGIC {
        return Err(FormatError::BadMagic { expected: "AMBRPEND" });
    }
    r.finish()?;
    Ok(len)
}

/// Encodes the directory plaintext.
pub fn encode_directory(entries: &[PackEntry]) -> Vec<u8> {
    let mut w = Writer::with_capacity(5 + entries.len() * ENTRY_LEN);
    w.u8(DIRECTORY_VERSION);
    w.u32(u32::try_from(entries.len()).unwrap_or(u32::MAX));
    for e in entries {
        e.encode(&mut w);
    }
    w.into_bytes()
}

/// Decodes the directory plaintext, checking that every entry lies inside the blob area.
///
/// # Errors
/// [`FormatError`] when malformed or out of bounds.
pub fn decode_directory(plain: &[u8], blob_area_end: u64) -> Result<Vec<PackEntry>, FormatError> {
    let mut r = Reader::new(plain);
    let v = r.u8("directory version")?;
    if v != DIRECTORY_VERSION {
        return Err(FormatError::UnsupportedVersion {
            object: "pack directory",
            version: u16::from(v),
            supported: u16::from(DIRECTORY_VERSION),
        });
    }
    let n = r.count32("directory count", ENTRY_LEN)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let e = PackEntry::decode(&mut r)?;
        let end = u64::from(e.offset) + u64::from(e.sealed_len);
        if u64::from(e.offset) < HEADER_LEN as u64 || end > blob_area_end {
            return Err(FormatError::invalid(
                "directory entry",
                format!("blob {} lies outside the pack", e.id),
            ));
        }
        out.push(e);
    }
    r.finish()?;
    Ok(out)
}

/// The all-zero id under which a pack directory is sealed.
pub const DIRECTORY_ID: Hash32 = Hash32::from_bytes([0u8; 32]);

/// A sealed blob waiting to be placed in a pack.
#[derive(Debug, Clone)]
pub struct SealedBlob {
    /// Its id.
    pub id: BlobId,
    /// Its kind.
    pub kind: BlobKind,
    /// Plaintext length.
    pub raw_len: u32,
    /// The sealed bytes.
    pub sealed: Vec<u8>,
}

/// A finished pack: its name, bytes and directory.
#[derive(Debug)]
pub struct BuiltPack {
    /// Hash of `bytes`.
    pub id: PackId,
    /// Data or metadata.
    pub kind: PackKind,
    /// The whole pack.
    pub bytes: Vec<u8>,
    /// Where each blob is.
    pub entries: Vec<PackEntry>,
}

/// Lays out a pack from sealed blobs in the order given by `shuffle_seed`, so the order of
/// blobs in a pack does not follow the order of the input.
///
/// # Errors
/// [`Error::InvalidArgument`] when the pack would exceed 4 GiB; [`CryptoError`] from sealing.
pub fn build_pack(
    key: &SealKey,
    kind: PackKind,
    blobs: Vec<SealedBlob>,
    shuffle_seed: u64,
) -> Result<BuiltPack, Error> {
    build_pack_with_nonce(key, kind, blobs, shuffle_seed, crate::crypto::random_array()?)
}

/// As [`build_pack`] with a fixed nonce for the directory: for golden vectors only.
///
/// # Errors
/// As [`build_pack`].
pub fn build_pack_with_nonce(
    key: &SealKey,
    kind: PackKind,
    mut blobs: Vec<SealedBlob>,
    shuffle_seed: u64,
    dir_nonce: [u8; crate::crypto::NONCE_LEN],
) -> Result<BuiltPack, Error> {
    shuffle(&mut blobs, shuffle_seed);
    let total: usize = blobs.iter().map(|b| b.sealed.len()).sum();
    let mut bytes = Vec::with_capacity(HEADER_LEN + total + blobs.len() * ENTRY_LEN + 64);
    bytes.extend_from_slice(&encode_header(kind));
    let mut entries = Vec::with_capacity(blobs.len());
    for b in blobs {
        let offset = u32::try_from(bytes.len()).map_err(|_| too_big())?;
        let sealed_len = u32::try_from(b.sealed.len()).map_err(|_| too_big())?;
        bytes.extend_from_slice(&b.sealed);
        entries.push(PackEntry {
            id: b.id,
            kind: b.kind,
            offset,
            sealed_len,
            raw_len: b.raw_len,
        });
    }
    let dir = blob::seal_blob_with_nonce(
        key,
        dir_nonce,
        BlobKind::PackDirectory,
        &DIRECTORY_ID,
        &encode_directory(&entries),
        None,
    )?;
    finish_pack(kind, bytes, entries, &dir)
}

fn finish_pack(kind: PackKind, mut bytes: Vec<u8>, entries: Vec<PackEntry>, dir: &[u8]) -> Result<BuiltPack, Error> {
    let dir_len = u32::try_from(dir.len()).map_err(|_| too_big())?;
    bytes.extend_from_slice(dir);
    bytes.extend_from_slice(&encode_footer(dir_len));
    if bytes.len() as u64 > MAX_PACK_LEN {
        return Err(too_big());
    }
    Ok(BuiltPack {
        id: PackId::new(plain_hash(&bytes)),
        kind,
        bytes,
        entries,
    })
}

fn too_big() -> Error {
    Error::InvalidArgument("pack larger than 4 GiB".into())
}

/// Fisher–Yates with xorshift64*; deterministic for a seed.
fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut x = seed | 1;
    for i in (1..items.len()).rev() {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let r = x.wrapping_mul(0x2545_f491_4f6c_dd1d);
        let j = (r % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

/// Reads the directory of a whole pack held in memory (verify, rebuild).
///
/// # Errors
/// [`Error::Corrupt`] naming the pack when anything does not check out.
pub fn read_directory(key: &SealKey, pack: PackId, bytes: &[u8]) -> Result<(PackKind, Vec<PackEntry>), Error> {
    let corrupt = |detail: String| Error::Corrupt {
        kind: "pack",
        id: pack.to_hex(),
        detail,
    };
    let header = bytes
        .get(..HEADER_LEN)
        .ok_or_else(|| corrupt("shorter than its header".into()))?;
    let kind = decode_header(header).map_err(|e| corrupt(e.to_string()))?;
    let footer_at = bytes
        .len()
        .checked_sub(FOOTER_LEN)
        .ok_or_else(|| corrupt("no footer".into()))?;
    let footer = bytes.get(footer_at..).ok_or_else(|| corrupt("no footer".into()))?;
    let dir_len = decode_footer(footer).map_err(|e| corrupt(e.to_string()))? as usize;
    let dir_at = footer_at.checked_sub(dir_len).filter(|&d| d >= HEADER_LEN);
    let dir_at = dir_at.ok_or_else(|| corrupt("directory length out of range".into()))?;
    let sealed = bytes
        .get(dir_at..footer_at)
        .ok_or_else(|| corrupt("directory out of range".into()))?;
    let entries = open_directory(key, pack, sealed, dir_at as u64)?;
    Ok((kind, entries))
}

/// Opens a sealed directory that ends the blob area at `blob_area_end`.
///
/// # Errors
/// [`Error::Corrupt`] naming the pack.
pub fn open_directory(key: &SealKey, pack: PackId, sealed: &[u8], blob_area_end: u64) -> Result<Vec<PackEntry>, Error> {
    let corrupt = |detail: String| Error::Corrupt {
        kind: "pack",
        id: pack.to_hex(),
        detail,
    };
    let max_plain = sealed.len().saturating_add(1);
    let plain = key
        .open(&blob::blob_aad(BlobKind::PackDirectory, &DIRECTORY_ID), sealed, || {
            format!("directory of pack {pack}")
        })
        .map_err(|e: CryptoError| corrupt(e.to_string()))?;
    let (tag, body) = plain.split_first().ok_or_else(|| corrupt("empty directory".into()))?;
    if *tag != 0 || body.len() > max_plain {
        return Err(corrupt("directory must be stored uncompressed".into()));
    }
    decode_directory(body, blob_area_end).map_err(|e| corrupt(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_and_read_back() {
        let key = SealKey::new(&[2u8; 32]).unwrap();
        let blobs: Vec<SealedBlob> = (0..20u8)
            .map(|i| {
                let id = Hash32::from_bytes([i; 32]);
                let data = vec![i; 100 + usize::from(i)];
                SealedBlob {
                    id: BlobId::new(id),
                    kind: BlobKind::Chunk,
                    raw_len: data.len() as u32,
                    sealed: blob::seal_blob(&key, BlobKind::Chunk, &id, &data, Some(3)).unwrap(),
                }
            })
            .collect();
        let pack = build_pack(&key, PackKind::Data, blobs, 99).unwrap();
        let order: Vec<u8> = pack.entries.iter().map(|e| e.id.as_bytes()[0]).collect();
        assert_ne!(order, (0..20).collect::<Vec<u8>>(), "blobs are shuffled");
        let (kind, entries) = read_directory(&key, pack.id, &pack.bytes).unwrap();
        assert_eq!(kind, PackKind::Data);
        assert_eq!(entries, pack.entries);
        for e in &entries {
            let sealed = &pack.bytes[e.offset as usize..(e.offset + e.sealed_len) as usize];
            let plain = blob::open_blob(&key, e.kind, e.id.hash(), sealed, e.raw_len as usize).unwrap();
            assert_eq!(plain, vec![e.id.as_bytes()[0]; e.raw_len as usize]);
        }
        let mut bad = pack.bytes.clone();
        let n = bad.len();
        bad[n - 20] ^= 1;
        assert!(read_directory(&key, pack.id, &bad).is_err());
        assert!(read_directory(&key, pack.id, &pack.bytes[..10]).is_err());
    }
}
