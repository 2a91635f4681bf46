//! A local copy of a remote store's metadata, in the state directory: snapshot objects and
//! whole metadata packs (trees, chunk lists, layouts), as the store holds them (sealed).
//! With it, listing snapshots, diffing them and planning tiers read the bucket only for
//! what is new. Used only for stores where requests are costly (S3).
//!
//! Every object here is immutable in the store and named by its content (a pack by the
//! BLAKE3 of its bytes, a snapshot by the keyed hash of its plaintext), so a copy is either
//! exactly the object or damaged: a pack is re-hashed before it is kept, every read opens
//! the seal and re-hashes the plaintext as a read from the store does, and a copy that
//! fails is deleted and read again from the store. Deleting the directory loses nothing.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::crypto::random_array;
use crate::id::PackId;

/// Where the copies live: `<cache dir>/<vault id>/objects/`.
#[derive(Debug)]
pub struct ObjectCache {
    dir: PathBuf,
}

impl ObjectCache {
    /// A cache in `dir` (made when first written).
    pub fn new(dir: PathBuf) -> ObjectCache {
        ObjectCache { dir }
    }

    fn path_of(&self, key: &str) -> PathBuf {
        self.dir.join(key)
    }

    /// The kept copy of the object at `key`, if any.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        std::fs::read(self.path_of(key)).ok()
    }

    /// `len` bytes at `offset` of the kept copy of `key`, if it is there and long enough.
    pub fn get_range(&self, key: &str, offset: u64, len: u64) -> Option<Vec<u8>> {
        let file = File::open(self.path_of(key)).ok()?;
        let mut buf = vec![0u8; usize::try_from(len).ok()?];
        file.read_exact_at(&mut buf, offset).ok()?;
        Some(buf)
    }

    /// Whether a copy of `key` is kept.
    pub fn has(&self, key: &str) -> bool {
        self.path_of(key).is_file()
    }

    /// Keeps `bytes` as the copy of `key` (written whole under a temporary name, then
    /// renamed, so a copy is never partial). Best effort: a cache that cannot be written
    /// (a full or read-only disk) only means the next read goes to the store.
    pub fn put(&self, key: &str, bytes: &[u8]) {
        let _ = self.try_put(key, bytes);
    }

    /// Keeps the bytes of pack `id` at `key` only if they hash to the pack's id.
    pub fn put_pack(&self, key: &str, id: &PackId, bytes: &[u8]) -> bool {
        let whole = blake3::hash(bytes).as_bytes() == id.hash().as_bytes();
        if whole {
            self.put(key, bytes);
        }
        whole
    }

    fn try_put(&self, key: &str, bytes: &[u8]) -> std::io::Result<()> {
        let path = self.path_of(key);
        let dir = path.parent().unwrap_or(&self.dir);
        std::fs::create_dir_all(dir)?;
        let name: [u8; 8] = random_array().map_err(std::io::Error::other)?;
        let tmp = dir.join(format!(".{}.tmp", hex::encode(name)));
        let written = write_new(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, &path));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }

    /// Forgets the copy of `key` (it failed a check).
    pub fn remove(&self, key: &str) {
        let _ = std::fs::remove_file(self.path_of(key));
    }
}

fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = File::create_new(path)?;
    file.write_all(bytes)?;
    file.sync_data()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::Hash32;

    #[test]
    fn copies_are_kept_whole_and_packs_only_when_they_hash_to_their_id() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ObjectCache::new(dir.path().join("objects"));
        assert_eq!(cache.get("snapshots/x"), None);
        cache.put("snapshots/x", b"sealed");
        assert_eq!(cache.get("snapshots/x").unwrap(), b"sealed");
        let bytes = b"a pack's bytes".to_vec();
        let id = PackId::new(Hash32::from_bytes(*blake3::hash(&bytes).as_bytes()));
        assert!(!cache.put_pack("meta/aa/p", &PackId::new(Hash32::from_bytes([0; 32])), &bytes));
        assert!(!cache.has("meta/aa/p"));
        assert!(cache.put_pack("meta/aa/p", &id, &bytes));
        assert_eq!(cache.get_range("meta/aa/p", 2, 4).unwrap(), b"pack");
        assert_eq!(cache.get_range("meta/aa/p", 10, 40), None, "past the end");
        cache.remove("meta/aa/p");
        assert!(!cache.has("meta/aa/p"));
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("objects/meta/aa")).unwrap().collect();
        assert!(leftovers.is_empty(), "no temporary file is left");
    }
}
