//! Blob framing: `nonce ‖ AES-256-GCM(compression tag ‖ body) ‖ tag`, with the blob's
//! kind and id as associated data so no blob can stand in for another.

use crate::compress::{self, Compression};
use crate::crypto::{NONCE_LEN, SEAL_OVERHEAD, SealKey};
use crate::error::{CryptoError, Error};
use crate::format::FormatError;
use crate::id::Hash32;

/// Largest plaintext of any blob (a chunk, a tree node of a huge directory, a segment).
pub const MAX_BLOB_LEN: usize = 64 * 1024 * 1024;

/// Associated-data label of format v1.
const AAD_LABEL: &[u8; 13] = b"amber blob v1";

/// What a blob holds; part of its associated data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum BlobKind {
    /// File or volume content.
    Chunk = 1,
    /// A directory node.
    Tree = 2,
    /// A chunk-list node.
    ChunkList = 3,
    /// The directory at the end of a pack.
    PackDirectory = 4,
    /// A snapshot object.
    Snapshot = 5,
    /// An index segment.
    IndexSegment = 6,
    /// A chunk of a tar layout (metadata: kept with trees, in the hot tier).
    Layout = 7,
}

impl BlobKind {
    /// Decodes the on-disk tag.
    ///
    /// # Errors
    /// [`FormatError::Invalid`] for an unknown tag.
    pub fn from_u8(v: u8) -> Result<Self, FormatError> {
        Ok(match v {
            1 => BlobKind::Chunk,
            2 => BlobKind::Tree,
            3 => BlobKind::ChunkList,
            4 => BlobKind::PackDirectory,
            5 => BlobKind::Snapshot,
            6 => BlobKind::IndexSegment,
            7 => BlobKind::Layout,
            other => return Err(FormatError::invalid("blob kind", format!("unknown tag {other}"))),
        })
    }
    /// True for content chunks, which live in data packs; everything else is metadata.
    pub fn is_data(self) -> bool {
        self == BlobKind::Chunk
    }
    /// Lower-case name for messages.
    pub fn name(self) -> &'static str {
        match self {
            BlobKind::Chunk => "chunk",
            BlobKind::Tree => "tree",
            BlobKind::ChunkList => "chunk list",
            BlobKind::PackDirectory => "pack directory",
            BlobKind::Snapshot => "snapshot",
            BlobKind::IndexSegment => "index segment",
            BlobKind::Layout => "tar layout",
        }
    }
}

/// The associated data of a blob: label ‖ kind ‖ id.
pub fn blob_aad(kind: BlobKind, id: &Hash32) -> [u8; 46] {
    let mut aad = [0u8; 46];
    let (label, rest) = aad.split_at_mut(AAD_LABEL.len());
    label.copy_from_slice(AAD_LABEL);
    if let Some((k, idb)) = rest.split_first_mut() {
        *k = kind as u8;
        idb.copy_from_slice(id.as_bytes());
    }
    aad
}

/// The associated data of a framed object: [`blob_aad`] followed by `framing`, the bytes of
/// the file that lie outside the seal (a pack's header and footer, a snapshot file's
/// header), so that no stored byte is left unauthenticated.
pub fn framed_aad(kind: BlobKind, id: &Hash32, framing: &[&[u8]]) -> Vec<u8> {
    let extra: usize = framing.iter().map(|f| f.len()).sum();
    let mut aad = Vec::with_capacity(46 + extra);
    aad.extend_from_slice(&blob_aad(kind, id));
    for f in framing {
        aad.extend_from_slice(f);
    }
    aad
}

/// The sealed length of a plaintext stored raw (compression tag 0): plaintext + 29.
pub const fn raw_sealed_len(plain_len: usize) -> usize {
    plain_len + 1 + SEAL_OVERHEAD
}

fn envelope(plaintext: &[u8], level: Option<i32>) -> Vec<u8> {
    let compressed = level.and_then(|l| compress::compress(plaintext, l));
    let (tag, body) = match &compressed {
        Some(c) => (Compression::Zstd, c.as_slice()),
        None => (Compression::None, plaintext),
    };
    let mut inner = Vec::with_capacity(body.len() + 1);
    inner.push(tag as u8);
    inner.extend_from_slice(body);
    inner
}

/// Compresses (when `level` is given and it helps) and seals a blob under a random nonce.
///
/// # Errors
/// [`CryptoError`] when no nonce can be drawn.
pub fn seal_blob(
    key: &SealKey,
    kind: BlobKind,
    id: &Hash32,
    plaintext: &[u8],
    level: Option<i32>,
) -> Result<Vec<u8>, CryptoError> {
    key.seal(&blob_aad(kind, id), envelope(plaintext, level))
}

/// As [`seal_blob`] with a fixed nonce: for golden vectors only.
///
/// # Errors
/// [`CryptoError`] as ring reports.
pub fn seal_blob_with_nonce(
    key: &SealKey,
    nonce: [u8; NONCE_LEN],
    kind: BlobKind,
    id: &Hash32,
    plaintext: &[u8],
    level: Option<i32>,
) -> Result<Vec<u8>, CryptoError> {
    key.seal_with_nonce(nonce, &blob_aad(kind, id), envelope(plaintext, level))
}

/// As [`seal_blob_with_nonce`] under the associated data `aad` (see [`framed_aad`]).
///
/// # Errors
/// [`CryptoError`] as ring reports.
pub fn seal_blob_with_aad(
    key: &SealKey,
    nonce: [u8; NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
    level: Option<i32>,
) -> Result<Vec<u8>, CryptoError> {
    key.seal_with_nonce(nonce, aad, envelope(plaintext, level))
}

/// Opens a sealed blob and returns its plaintext, which must be `raw_len` bytes long.
/// The caller re-hashes the plaintext against the id where the id is a content hash.
///
/// # Errors
/// [`Error::Crypto`] when authentication fails; [`Error::Corrupt`] for a bad envelope.
pub fn open_blob(key: &SealKey, kind: BlobKind, id: &Hash32, sealed: &[u8], raw_len: usize) -> Result<Vec<u8>, Error> {
    let corrupt = |detail: String| Error::Corrupt {
        kind: kind.name(),
        id: id.to_hex(),
        detail,
    };
    if raw_len > MAX_BLOB_LEN {
        return Err(corrupt(format!("announced length {raw_len} exceeds {MAX_BLOB_LEN}")));
    }
    let inner = key.open(&blob_aad(kind, id), sealed, || format!("{} {}", kind.name(), id))?;
    let (tag, body) = inner.split_first().ok_or_else(|| corrupt("empty envelope".into()))?;
    match Compression::from_u8(*tag) {
        Some(Compression::None) if body.len() == raw_len => Ok(body.to_vec()),
        Some(Compression::None) => Err(corrupt(format!("{} bytes, expected {raw_len}", body.len()))),
        Some(Compression::Zstd) => compress::decompress(body, raw_len).map_err(corrupt),
        None => Err(corrupt(format!("unknown compression tag {tag}"))),
    }
}

/// Opens a sealed object whose plaintext length is recorded nowhere (snapshots, index
/// segments), refusing to expand beyond [`MAX_BLOB_LEN`].
///
/// # Errors
/// As [`open_blob`].
pub fn open_blob_unsized(key: &SealKey, kind: BlobKind, id: &Hash32, sealed: &[u8]) -> Result<Vec<u8>, Error> {
    open_blob_unsized_with_aad(key, kind, id, &blob_aad(kind, id), sealed)
}

/// As [`open_blob_unsized`] under the associated data `aad` (see [`framed_aad`]); `kind`
/// and `id` name the object in errors.
///
/// # Errors
/// As [`open_blob`].
pub fn open_blob_unsized_with_aad(
    key: &SealKey,
    kind: BlobKind,
    id: &Hash32,
    aad: &[u8],
    sealed: &[u8],
) -> Result<Vec<u8>, Error> {
    let corrupt = |detail: String| Error::Corrupt {
        kind: kind.name(),
        id: id.to_hex(),
        detail,
    };
    let inner = key.open(aad, sealed, || format!("{} {}", kind.name(), id))?;
    let (tag, body) = inner.split_first().ok_or_else(|| corrupt("empty envelope".into()))?;
    match Compression::from_u8(*tag) {
        Some(Compression::None) => Ok(body.to_vec()),
        Some(Compression::Zstd) => compress::decompress_bounded(body, MAX_BLOB_LEN).map_err(corrupt),
        None => Err(corrupt(format!("unknown compression tag {tag}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SealKey {
        SealKey::new(&[3u8; 32]).unwrap()
    }

    #[test]
    fn round_trip_and_binding() {
        let id = Hash32::from_bytes([5; 32]);
        let data = vec![1u8; 10_000];
        let sealed = seal_blob(&key(), BlobKind::Chunk, &id, &data, Some(3)).unwrap();
        assert!(sealed.len() < 200, "compressible data is compressed");
        assert_eq!(
            open_blob(&key(), BlobKind::Chunk, &id, &sealed, data.len()).unwrap(),
            data
        );
        // Another kind or id does not open it.
        assert!(open_blob(&key(), BlobKind::Tree, &id, &sealed, data.len()).is_err());
        let other = Hash32::from_bytes([6; 32]);
        assert!(open_blob(&key(), BlobKind::Chunk, &other, &sealed, data.len()).is_err());
        // A wrong announced length is caught.
        assert!(open_blob(&key(), BlobKind::Chunk, &id, &sealed, 9_999).is_err());
        assert!(open_blob(&key(), BlobKind::Chunk, &id, &sealed, MAX_BLOB_LEN + 1).is_err());
    }
}
