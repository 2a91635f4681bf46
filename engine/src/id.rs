//! Typed ids over one 32-byte hash, so a pack id can never stand where a chunk id belongs.

use std::fmt;

use crate::format::FormatError;

/// Length of every id in bytes.
pub const ID_LEN: usize = 32;

/// A 32-byte hash: the representation behind every typed id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Hash32([u8; ID_LEN]);

impl Hash32 {
    /// Wraps raw bytes.
    pub const fn from_bytes(bytes: [u8; ID_LEN]) -> Self {
        Hash32(bytes)
    }
    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; ID_LEN] {
        &self.0
    }
    /// Lower-case hex, 64 characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    /// Parses 64 hex characters.
    ///
    /// # Errors
    /// [`FormatError::BadHex`] when the text is not 64 hex digits.
    pub fn from_hex(text: &str) -> Result<Self, FormatError> {
        let mut out = [0u8; ID_LEN];
        hex::decode_to_slice(text, &mut out).map_err(|_| FormatError::BadHex(text.to_string()))?;
        Ok(Hash32(out))
    }
    /// Reads an id from a slice of exactly 32 bytes.
    ///
    /// # Errors
    /// [`FormatError::Truncated`] when the slice has another length.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, FormatError> {
        let arr: [u8; ID_LEN] = bytes.try_into().map_err(|_| FormatError::Truncated("id"))?;
        Ok(Hash32(arr))
    }
}

impl fmt::Debug for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Display for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub struct $name(Hash32);

        impl $name {
            /// Wraps a hash.
            pub const fn new(hash: Hash32) -> Self {
                $name(hash)
            }
            /// The underlying hash.
            pub const fn hash(&self) -> &Hash32 {
                &self.0
            }
            /// The raw bytes.
            pub const fn as_bytes(&self) -> &[u8; ID_LEN] {
                self.0.as_bytes()
            }
            /// Lower-case hex.
            pub fn to_hex(&self) -> String {
                self.0.to_hex()
            }
            /// Parses 64 hex characters.
            ///
            /// # Errors
            /// [`FormatError::BadHex`] when the text is not 64 hex digits.
            pub fn from_hex(text: &str) -> Result<Self, FormatError> {
                Hash32::from_hex(text).map($name)
            }
            /// The first eight hex digits, for messages.
            pub fn short(&self) -> String {
                let mut s = self.to_hex();
                s.truncate(8);
                s
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

typed_id!(
    /// Any blob stored in a pack (a chunk or a metadata node): the key of the index.
    BlobId
);
typed_id!(
    /// A chunk of file or volume content: keyed BLAKE3 of its plaintext.
    ChunkId
);
typed_id!(
    /// A tree node (one directory): keyed BLAKE3 of its encoding.
    TreeId
);
typed_id!(
    /// A chunk-list node: keyed BLAKE3 of its encoding.
    ListId
);
typed_id!(
    /// A pack file: plain BLAKE3 of its bytes, so anyone can verify it.
    PackId
);
typed_id!(
    /// A snapshot object: keyed BLAKE3 of its plaintext encoding.
    SnapshotId
);
typed_id!(
    /// A vault (one lab's isolated repository): random at init.
    VaultId
);
typed_id!(
    /// An index segment: plain BLAKE3 of its bytes.
    SegmentId
);
typed_id!(
    /// A key slot: random at creation.
    KeySlotId
);

impl ChunkId {
    /// The id of an all-zero block of a volume: a hole, stored nowhere and read from nowhere.
    pub const HOLE: ChunkId = ChunkId(Hash32([0u8; ID_LEN]));

    /// True for [`ChunkId::HOLE`].
    pub fn is_hole(&self) -> bool {
        *self == ChunkId::HOLE
    }
}

macro_rules! into_blob_id {
    ($($name:ident),*) => {$(
        impl From<$name> for BlobId {
            fn from(id: $name) -> BlobId {
                BlobId(id.0)
            }
        }
    )*};
}
into_blob_id!(ChunkId, TreeId, ListId);
