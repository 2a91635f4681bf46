//! Pack layout: header, sealed blobs in shuffled order, sealed directory, footer.
//!
//! ```text
//! 0      8   "AMBRPACK"
//! 8      2   version (2; version 1 is still read)
//! 10     1   pack kind (1 data, 2 metadata)
//! 11     5   zero
//! 16     ..  sealed blobs, back to back (in v2 they tile the blob area exactly)
//! ..     n   sealed directory (blob kind 4, id all zero; in v2 its associated data also
//!            holds the header and the footer)
//! end-16 4   n, the sealed directory's length
//! end-12 4   zero
//! end-8  8   "AMBRPEND"
//! ```
//!
//! In a v2 pack every byte is covered by a seal: the blobs by their own, the directory by
//! its own, and the header and footer by the directory's associated data. A reader of
//! ranges (restore, index rebuild) therefore detects a change to any byte it relies on
//! without hashing the whole pack.

use crate::crypto::SealKey;
use crate::error::{CryptoError, Error};
use crate::format::FormatError;
use crate::format::blob::{self, BlobKind};
use crate::format::codec::{Reader, Writer, expect_header_versions, expect_zeros};
use crate::hash::plain_hash;
use crate::id::{BlobId, Hash32, PackId};

/// Pack magic.
pub const PACK_MAGIC: &[u8; 8] = b"AMBRPACK";
/// Footer magic.
pub const PACK_END_MAGIC: &[u8; 8] = b"AMBRPEND";
/// Pack version the writer writes: the header and footer are in the directory's AAD.
pub const PACK_VERSION: u16 = 2;
/// The first pack version, still read: the directory's AAD covers neither header nor footer.
pub const PACK_VERSION_V1: u16 = 1;
/// Header bytes.
pub const HEADER_LEN: usize = 16;
/// Footer bytes.
pub const FOOTER_LEN: usize = 16;
/// Bytes of one directory entry.
pub const ENTRY_LEN: usize = 32 + 1 + 4 + 4 + 4;
/// Version byte of the directory plaintext (the same in pack versions 1 and 2).
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

/// What a pack header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackHeader {
    /// [`PACK_VERSION_V1`] or [`PACK_VERSION`].
    pub version: u16,
    /// Data or metadata.
    pub kind: PackKind,
}

/// Encodes the 16-byte header of a pack the writer writes (version [`PACK_VERSION`]).
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

/// Decodes the 16-byte header of a version 1 or 2 pack.
///
/// # Errors
/// [`FormatError`] for a bad magic, version or kind, non-zero reserved bytes or a length
/// other than 16.
pub fn decode_header(bytes: &[u8]) -> Result<PackHeader, FormatError> {
    let mut r = Reader::new(bytes);
    let version = expect_header_versions(&mut r, PACK_MAGIC, "pack", PACK_VERSION_V1..=PACK_VERSION)?;
    let kind = PackKind::from_u8(r.u8("pack kind")?)?;
    expect_zeros(&mut r, 5, "pack header reserved bytes")?;
    r.finish()?;
    Ok(PackHeader { version, kind })
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
/// [`FormatError`] when the footer is malformed or its reserved bytes are not zero.
pub fn decode_footer(bytes: &[u8]) -> Result<u32, FormatError> {
    let mut r = Reader::new(bytes);
    let len = r.u32("footer directory length")?;
    expect_zeros(&mut r, 4, "pack footer reserved bytes")?;
    if r.take(8, "footer magic")? != PACK_END_MAGIC {
        return Err(FormatError::BadMagic { expected: "AMBRPEND" });
    }
    r.finish()?;
    Ok(len)
}

/// The associated data of the directory of a pack of `version`: in version 1 the plain
/// blob AAD (kind 4, zero id); from version 2 on, followed by the header and the footer.
pub fn directory_aad(version: u16, header: &[u8], footer: &[u8]) -> Vec<u8> {
    if version == PACK_VERSION_V1 {
        blob::blob_aad(BlobKind::PackDirectory, &DIRECTORY_ID).to_vec()
    } else {
        blob::framed_aad(BlobKind::PackDirectory, &DIRECTORY_ID, &[header, footer])
    }
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

/// Checks that the entries, sorted by offset, tile the blob area `16 .. blob_area_end`
/// exactly: no gap, no overlap (required from pack version 2 on).
///
/// # Errors
/// [`FormatError::Invalid`] naming the first offset where a gap or an overlap is.
pub fn check_tiling(entries: &[PackEntry], blob_area_end: u64) -> Result<(), FormatError> {
    let mut spans: Vec<(u64, u64)> = entries
        .iter()
        .map(|e| (u64::from(e.offset), u64::from(e.sealed_len)))
        .collect();
    spans.sort_unstable();
    let mut at = HEADER_LEN as u64;
    for (offset, len) in spans {
        if offset != at {
            return Err(tiling_error(at, offset));
        }
        at = offset + len;
    }
    if at != blob_area_end {
        return Err(tiling_error(at, blob_area_end));
    }
    Ok(())
}

fn tiling_error(expected: u64, found: u64) -> FormatError {
    let detail = if found > expected {
        format!("bytes {expected} .. {found} of the blob area belong to no blob")
    } else {
        format!("blobs overlap at offset {found} (the previous one ends at {expected})")
    };
    FormatError::invalid("pack directory", detail)
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
    let header = encode_header(kind);
    let (mut bytes, entries) = lay_out(&header, blobs)?;
    let (dir, footer) = seal_directory(key, dir_nonce, &header, &entries)?;
    bytes.extend_from_slice(&dir);
    bytes.extend_from_slice(&footer);
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

/// The header followed by the blobs back to back, and where each one is.
fn lay_out(header: &[u8; HEADER_LEN], blobs: Vec<SealedBlob>) -> Result<(Vec<u8>, Vec<PackEntry>), Error> {
    let total: usize = blobs.iter().map(|b| b.sealed.len()).sum();
    let mut bytes = Vec::with_capacity(HEADER_LEN + total + blobs.len() * ENTRY_LEN + 64);
    bytes.extend_from_slice(header);
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
    Ok((bytes, entries))
}

/// Seals the directory of a version 2 pack raw under [`directory_aad`], whose footer is
/// known before sealing (a raw seal is the plaintext + 29 bytes); returns it and the footer.
fn seal_directory(
    key: &SealKey,
    nonce: [u8; crate::crypto::NONCE_LEN],
    header: &[u8; HEADER_LEN],
    entries: &[PackEntry],
) -> Result<(Vec<u8>, [u8; FOOTER_LEN]), Error> {
    let plain = encode_directory(entries);
    let dir_len = u32::try_from(blob::raw_sealed_len(plain.len())).map_err(|_| too_big())?;
    let footer = encode_footer(dir_len);
    let aad = directory_aad(PACK_VERSION, header, &footer);
    let dir = blob::seal_blob_with_aad(key, nonce, &aad, &plain, None)?;
    debug_assert_eq!(dir.len(), dir_len as usize, "a raw seal is the plaintext + 29 bytes");
    Ok((dir, footer))
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

/// Reads the directory of a whole pack held in memory (verify, rebuild); the kind is the
/// header's, which the caller compares with where the pack is stored.
///
/// # Errors
/// [`Error::Corrupt`] naming the pack when anything does not check out.
pub fn read_directory(key: &SealKey, pack: PackId, bytes: &[u8]) -> Result<(PackKind, Vec<PackEntry>), Error> {
    let corrupt = corrupt_pack(pack);
    let header = bytes
        .get(..HEADER_LEN)
        .ok_or_else(|| corrupt("shorter than its header".into()))?;
    let kind = decode_header(header).map_err(|e| corrupt(format!("header: {e}")))?.kind;
    let footer_at = bytes
        .len()
        .checked_sub(FOOTER_LEN)
        .filter(|&f| f >= HEADER_LEN)
        .ok_or_else(|| corrupt("no footer".into()))?;
    let footer = bytes.get(footer_at..).ok_or_else(|| corrupt("no footer".into()))?;
    let dir_len = decode_footer(footer).map_err(|e| corrupt(format!("footer: {e}")))? as usize;
    let dir_at = footer_at.checked_sub(dir_len).filter(|&d| d >= HEADER_LEN);
    let dir_at = dir_at.ok_or_else(|| corrupt("directory length out of range".into()))?;
    let sealed = bytes
        .get(dir_at..footer_at)
        .ok_or_else(|| corrupt("directory out of range".into()))?;
    let entries = open_pack_directory(key, pack, kind, header, footer, sealed, dir_at as u64)?;
    Ok((kind, entries))
}

/// Opens the directory of a pack from its three parts, as a reader of ranges has them: the
/// 16-byte `header`, the 16-byte `footer`, and the `sealed` directory that starts at byte
/// `dir_at` of the pack. Pure: no I/O.
///
/// Checks the header (magic, version 1 or 2, reserved bytes zero, kind = `expected`, the
/// kind the `data/` or `meta/` prefix says), the footer (magic, reserved bytes zero, length
/// = `sealed.len()`), opens the directory under the associated data of the header's version
/// and checks that every entry lies inside the blob area `16 .. dir_at`. For version 2 the
/// header and footer are part of that associated data, and the entries must tile the blob
/// area exactly ([`check_tiling`]), so no byte of the pack is outside a seal.
///
/// # Errors
/// [`Error::Corrupt`] naming the pack and what is wrong (header, footer, authentication,
/// entries).
pub fn open_pack_directory(
    key: &SealKey,
    pack: PackId,
    expected: PackKind,
    header: &[u8],
    footer: &[u8],
    sealed: &[u8],
    dir_at: u64,
) -> Result<Vec<PackEntry>, Error> {
    let corrupt = corrupt_pack(pack);
    let h = decode_header(header).map_err(|e| corrupt(format!("header: {e}")))?;
    if h.kind != expected {
        return Err(corrupt(format!(
            "the header says a {} pack but it is stored under {}/",
            h.kind.prefix(),
            expected.prefix()
        )));
    }
    let dir_len = decode_footer(footer).map_err(|e| corrupt(format!("footer: {e}")))?;
    if dir_len as usize != sealed.len() || dir_at < HEADER_LEN as u64 {
        return Err(corrupt(format!(
            "the footer gives a directory of {dir_len} bytes, {} bytes at offset {dir_at} were given",
            sealed.len()
        )));
    }
    let aad = directory_aad(h.version, header, footer);
    let entries = open_directory(key, pack, &aad, sealed, dir_at)?;
    if h.version >= PACK_VERSION {
        check_tiling(&entries, dir_at).map_err(|e| corrupt(e.to_string()))?;
    }
    Ok(entries)
}

fn corrupt_pack(pack: PackId) -> impl Fn(String) -> Error {
    move |detail| Error::Corrupt {
        kind: "pack",
        id: pack.to_hex(),
        detail,
    }
}

/// Opens a sealed directory under `aad` that ends the blob area at `blob_area_end`.
fn open_directory(
    key: &SealKey,
    pack: PackId,
    aad: &[u8],
    sealed: &[u8],
    blob_area_end: u64,
) -> Result<Vec<PackEntry>, Error> {
    let corrupt = corrupt_pack(pack);
    let max_plain = sealed.len().saturating_add(1);
    let plain = key
        .open(aad, sealed, || format!("directory of pack {pack}"))
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

    fn key() -> SealKey {
        SealKey::new(&[2u8; 32]).unwrap()
    }

    fn blobs(key: &SealKey, n: u8) -> Vec<SealedBlob> {
        (0..n)
            .map(|i| {
                let id = Hash32::from_bytes([i; 32]);
                let data = vec![i; 100 + usize::from(i)];
                SealedBlob {
                    id: BlobId::new(id),
                    kind: BlobKind::Chunk,
                    raw_len: data.len() as u32,
                    sealed: blob::seal_blob(key, BlobKind::Chunk, &id, &data, Some(3)).unwrap(),
                }
            })
            .collect()
    }

    /// The header of a data pack of `version`.
    fn header_of(version: u16) -> [u8; HEADER_LEN] {
        let mut header = encode_header(PackKind::Data);
        header[8..10].copy_from_slice(&version.to_le_bytes());
        header
    }

    /// The header, the blob area and where its blobs are, for tests to change before
    /// [`seal_as`] seals a directory over them.
    fn blob_area(key: &SealKey, version: u16) -> (Vec<u8>, Vec<PackEntry>) {
        lay_out(&header_of(version), blobs(key, 3)).unwrap()
    }

    /// Appends a directory of `entries` sealed under the AAD of `version`, and the footer.
    fn seal_as(key: &SealKey, version: u16, mut bytes: Vec<u8>, entries: &[PackEntry]) -> Vec<u8> {
        let plain = encode_directory(entries);
        let footer = encode_footer(blob::raw_sealed_len(plain.len()) as u32);
        let aad = directory_aad(version, &header_of(version), &footer);
        let dir = blob::seal_blob_with_aad(key, [9; 12], &aad, &plain, None).unwrap();
        bytes.extend_from_slice(&dir);
        bytes.extend_from_slice(&footer);
        bytes
    }

    fn read(bytes: &[u8]) -> Result<Vec<PackEntry>, String> {
        let id = PackId::new(plain_hash(bytes));
        read_directory(&key(), id, bytes)
            .map(|(_, e)| e)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn build_and_read_back() {
        let key = key();
        let pack = build_pack(&key, PackKind::Data, blobs(&key, 20), 99).unwrap();
        let order: Vec<u8> = pack.entries.iter().map(|e| e.id.as_bytes()[0]).collect();
        assert_ne!(order, (0..20).collect::<Vec<u8>>(), "blobs are shuffled");
        assert_eq!(decode_header(&pack.bytes[..HEADER_LEN]).unwrap().version, PACK_VERSION);
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

    #[test]
    fn ranged_parts_open_only_under_the_expected_kind() {
        let key = key();
        let pack = build_pack(&key, PackKind::Meta, blobs(&key, 3), 1).unwrap();
        let n = pack.bytes.len();
        let dir_len = decode_footer(&pack.bytes[n - FOOTER_LEN..]).unwrap() as usize;
        let dir_at = n - FOOTER_LEN - dir_len;
        let (header, footer) = (&pack.bytes[..HEADER_LEN], &pack.bytes[n - FOOTER_LEN..]);
        let sealed = &pack.bytes[dir_at..n - FOOTER_LEN];
        let open = |kind, sealed: &[u8], at: usize| {
            open_pack_directory(&key, pack.id, kind, header, footer, sealed, at as u64)
        };
        assert_eq!(open(PackKind::Meta, sealed, dir_at).unwrap(), pack.entries);
        let err = open(PackKind::Data, sealed, dir_at).unwrap_err().to_string();
        assert!(err.contains("stored under data/"), "{err}");
        assert!(
            open(PackKind::Meta, &sealed[1..], dir_at + 1).is_err(),
            "length differs from the footer"
        );
        assert!(
            open(PackKind::Meta, sealed, dir_at + 1).is_err(),
            "entries do not reach the directory"
        );
    }

    #[test]
    fn every_header_and_footer_byte_is_covered() {
        let key = key();
        let pack = build_pack(&key, PackKind::Data, blobs(&key, 3), 7).unwrap();
        let n = pack.bytes.len();
        for at in (0..HEADER_LEN).chain(n - FOOTER_LEN..n) {
            for bit in [0x01, 0x80] {
                let mut bad = pack.bytes.clone();
                bad[at] ^= bit;
                assert!(read(&bad).is_err(), "byte {at} flipped with {bit:#x} went unnoticed");
            }
        }
        // The checks on the structure aside, the seal itself binds every header and footer
        // byte: the directory opens under no other header or footer.
        let dir_len = decode_footer(&pack.bytes[n - FOOTER_LEN..]).unwrap() as usize;
        let dir_at = n - FOOTER_LEN - dir_len;
        let sealed = &pack.bytes[dir_at..n - FOOTER_LEN];
        let (header, footer) = (&pack.bytes[..HEADER_LEN], &pack.bytes[n - FOOTER_LEN..]);
        let open = |h: &[u8], f: &[u8]| open_directory(&key, pack.id, &directory_aad(2, h, f), sealed, dir_at as u64);
        assert!(open(header, footer).is_ok());
        for at in 0..HEADER_LEN {
            let mut h = header.to_vec();
            h[at] ^= 1;
            assert!(open(&h, footer).is_err(), "header byte {at}");
        }
        for at in 0..FOOTER_LEN {
            let mut f = footer.to_vec();
            f[at] ^= 1;
            assert!(open(header, &f).is_err(), "footer byte {at}");
        }
    }

    #[test]
    fn a_downgraded_or_relabelled_pack_fails_authentication() {
        let key = key();
        let pack = build_pack(&key, PackKind::Data, blobs(&key, 3), 7).unwrap();
        let mut v1 = pack.bytes.clone();
        v1[8] = 1;
        let err = read(&v1).unwrap_err();
        assert!(err.contains("authentication failed"), "{err}");
        let mut meta = pack.bytes.clone();
        meta[10] = PackKind::Meta as u8;
        let err = read(&meta).unwrap_err();
        assert!(err.contains("authentication failed"), "{err}");
    }

    #[test]
    fn version_2_entries_tile_the_blob_area() {
        let key = key();
        let (bytes, entries) = blob_area(&key, 2);
        assert_eq!(read(&seal_as(&key, 2, bytes.clone(), &entries)).unwrap(), entries);

        // A byte between the first and the second blob.
        let mut gapped = bytes[..(entries[1].offset as usize)].to_vec();
        gapped.push(0xaa);
        gapped.extend_from_slice(&bytes[entries[1].offset as usize..]);
        let mut shifted = entries.clone();
        for e in &mut shifted[1..] {
            e.offset += 1;
        }
        let err = read(&seal_as(&key, 2, gapped.clone(), &shifted)).unwrap_err();
        assert!(err.contains("belong to no blob"), "{err}");
        // Version 1 did not check: the same layout reads.
        let mut v1 = gapped;
        v1[8] = 1;
        assert_eq!(read(&seal_as(&key, 1, v1, &shifted)).unwrap(), shifted);

        // A byte after the last blob, before the directory.
        let mut trailing = bytes.clone();
        trailing.push(0);
        let err = read(&seal_as(&key, 2, trailing, &entries)).unwrap_err();
        assert!(err.contains("belong to no blob"), "{err}");

        // The second blob claims the first one's last byte.
        let mut overlapping = entries.clone();
        overlapping[1].offset -= 1;
        overlapping[1].sealed_len += 1;
        let err = read(&seal_as(&key, 2, bytes.clone(), &overlapping)).unwrap_err();
        assert!(err.contains("overlap"), "{err}");

        // Listed out of order, the entries still tile once sorted by offset.
        let mut reversed = entries.clone();
        reversed.reverse();
        assert_eq!(read(&seal_as(&key, 2, bytes, &reversed)).unwrap(), reversed);
    }

    #[test]
    fn reserved_bytes_must_be_zero() {
        for (at, version) in [(11, 1), (15, 1), (11, 2)] {
            let mut header = header_of(version);
            header[at] = 1;
            assert!(decode_header(&header).is_err(), "header byte {at}, version {version}");
        }
        assert!(decode_header(&header_of(3)).is_err());
        assert!(decode_header(&header_of(0)).is_err());
        let mut footer = encode_footer(100);
        assert_eq!(decode_footer(&footer).unwrap(), 100);
        footer[5] = 1;
        assert!(decode_footer(&footer).is_err());
    }
}
