//! Keyed BLAKE3: content ids that only holders of the vault key can compute.

use crate::id::Hash32;

/// The per-vault key for content ids.
#[derive(Clone)]
pub struct IdKey([u8; 32]);

impl IdKey {
    /// Wraps key bytes (derived from the master key).
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        IdKey(bytes)
    }

    /// The key's bytes, for a client that must verify ids it is given (a restore client
    /// checks every chunk it fetches against its id).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Keyed BLAKE3 of `data`.
    pub fn hash(&self, data: &[u8]) -> Hash32 {
        Hash32::from_bytes(*blake3::keyed_hash(&self.0, data).as_bytes())
    }

    /// Keyed BLAKE3 of several parts, as if concatenated.
    pub fn hash_parts(&self, parts: &[&[u8]]) -> Hash32 {
        let mut hasher = blake3::Hasher::new_keyed(&self.0);
        for part in parts {
            hasher.update(part);
        }
        Hash32::from_bytes(*hasher.finalize().as_bytes())
    }
}

impl std::fmt::Debug for IdKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdKey(..)")
    }
}

/// Plain (unkeyed) BLAKE3, for objects named by the hash of their stored bytes.
pub fn plain_hash(data: &[u8]) -> Hash32 {
    Hash32::from_bytes(*blake3::hash(data).as_bytes())
}
