//! Where each object lives in the store.

use crate::format::pack::PackKind;
use crate::id::{KeySlotId, PackId, SegmentId, SnapshotId};

/// The vault config.
pub const CONFIG_KEY: &str = "config";
/// Prefix of key slots.
pub const KEYS_PREFIX: &str = "keys/";
/// Prefix of snapshot objects.
pub const SNAPSHOTS_PREFIX: &str = "snapshots/";
/// Prefix of index segments.
pub const INDEX_PREFIX: &str = "index/";

/// `data/ab/ab…` or `meta/ab/ab…`.
pub fn pack_key(kind: PackKind, id: &PackId) -> String {
    let hex = id.to_hex();
    format!("{}/{}/{}", kind.prefix(), hex.get(..2).unwrap_or("00"), hex)
}

/// `snapshots/<id>`.
pub fn snapshot_key(id: &SnapshotId) -> String {
    format!("{SNAPSHOTS_PREFIX}{}", id.to_hex())
}

/// `index/<id>`.
pub fn segment_key(id: &SegmentId) -> String {
    format!("{INDEX_PREFIX}{}", id.to_hex())
}

/// `keys/<id>`.
pub fn keyslot_key(id: &KeySlotId) -> String {
    format!("{KEYS_PREFIX}{}", id.to_hex())
}

/// The last path component of a key, parsed as an id.
pub fn id_of_key(key: &str) -> Option<crate::id::Hash32> {
    key.rsplit('/').next().and_then(|h| crate::id::Hash32::from_hex(h).ok())
}
