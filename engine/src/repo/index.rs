//! The local index: a RocksDB cache mapping blob ids to pack locations, and wire digests
//! (what a pushing client can compute) to chunk ids. It can always be rebuilt from the
//! store (losing the wire digests only costs re-sending); it never holds plaintext.

use std::path::{Path, PathBuf};

use rocksdb::{ColumnFamilyDescriptor, DB, Options, WriteBatch};

use crate::error::{Error, Result};
use crate::format::blob::BlobKind;
use crate::format::pack::{PackEntry, PackKind};
use crate::format::segment::PackRecord;
use crate::id::{BlobId, ChunkId, Hash32, PackId, SegmentId, SnapshotId};

const CF_BLOBS: &str = "blobs";
const CF_PACKS: &str = "packs";
const CF_SEGMENTS: &str = "segments";
const CF_WIRE: &str = "wire";
const CF_LAYERS: &str = "layers";
const ALL_CFS: [&str; 5] = [CF_BLOBS, CF_PACKS, CF_SEGMENTS, CF_WIRE, CF_LAYERS];
const LOCATION_LEN: usize = 32 + 1 + 4 + 4 + 4 + 1;

/// Where a blob is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobLocation {
    /// The pack.
    pub pack: PackId,
    /// Data or metadata pack.
    pub pack_kind: PackKind,
    /// Offset of the sealed blob.
    pub offset: u32,
    /// Sealed length.
    pub sealed_len: u32,
    /// Plaintext length.
    pub raw_len: u32,
    /// Blob kind.
    pub kind: BlobKind,
}

impl BlobLocation {
    fn encode(&self) -> [u8; LOCATION_LEN] {
        let mut out = [0u8; LOCATION_LEN];
        let mut w = crate::format::codec::Writer::with_capacity(LOCATION_LEN);
        w.id(self.pack.hash());
        w.u8(self.pack_kind as u8);
        w.u32(self.offset);
        w.u32(self.sealed_len);
        w.u32(self.raw_len);
        w.u8(self.kind as u8);
        out.copy_from_slice(&w.into_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let mut r = crate::format::codec::Reader::new(bytes);
        Some(BlobLocation {
            pack: PackId::new(r.id("pack").ok()?),
            pack_kind: PackKind::from_u8(r.u8("kind").ok()?).ok()?,
            offset: r.u32("offset").ok()?,
            sealed_len: r.u32("len").ok()?,
            raw_len: r.u32("raw").ok()?,
            kind: BlobKind::from_u8(r.u8("kind").ok()?).ok()?,
        })
    }
}

/// The RocksDB index of one vault.
pub struct Index {
    db: DB,
    path: PathBuf,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Index({})", self.path.display())
    }
}

impl Index {
    /// Opens (creating if needed) the index at `path`.
    ///
    /// # Errors
    /// [`Error::Index`], for example when another process holds it open.
    pub fn open(path: &Path) -> Result<Self> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        let cfs = ALL_CFS.map(|n| ColumnFamilyDescriptor::new(n, Options::default()));
        let db = DB::open_cf_descriptors(&opts, path, cfs).map_err(|e| index_err(path, &e))?;
        Ok(Index {
            db,
            path: path.to_path_buf(),
        })
    }

    /// Deletes the index at `path` (it is a cache).
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn destroy(path: &Path) -> Result<()> {
        match std::fs::remove_dir_all(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    fn err(&self, e: &rocksdb::Error) -> Error {
        index_err(&self.path, e)
    }

    fn cf(&self, name: &'static str) -> Result<&rocksdb::ColumnFamily> {
        self.db.cf_handle(name).ok_or_else(|| Error::Index {
            path: self.path.clone(),
            message: format!("column family {name} missing"),
        })
    }

    /// Where a blob is, if indexed.
    ///
    /// # Errors
    /// [`Error::Index`].
    pub fn lookup(&self, id: &BlobId) -> Result<Option<BlobLocation>> {
        let v = self
            .db
            .get_pinned_cf(self.cf(CF_BLOBS)?, id.as_bytes())
            .map_err(|e| self.err(&e))?;
        match v {
            None => Ok(None),
            Some(bytes) => BlobLocation::decode(&bytes).map(Some).ok_or_else(|| Error::Index {
                path: self.path.clone(),
                message: format!("bad entry for blob {id}"),
            }),
        }
    }

    /// True when the blob is indexed.
    ///
    /// # Errors
    /// [`Error::Index`].
    pub fn contains(&self, id: &BlobId) -> Result<bool> {
        Ok(self
            .db
            .get_pinned_cf(self.cf(CF_BLOBS)?, id.as_bytes())
            .map_err(|e| self.err(&e))?
            .is_some())
    }

    /// Records every blob of a pack, atomically with the pack itself.
    ///
    /// # Errors
    /// [`Error::Index`].
    pub fn add_pack(&self, pack: &PackRecord) -> Result<()> {
        let mut batch = WriteBatch::default();
        let blobs = self.cf(CF_BLOBS)?;
        for e in &pack.entries {
            batch.put_cf(blobs, e.id.as_bytes(), location(pack.id, pack.kind, e).encode());
        }
        let mut meta = crate::format::codec::Writer::with_capacity(9);
        meta.u8(pack.kind as u8);
        meta.u64(pack.len);
        batch.put_cf(self.cf(CF_PACKS)?, pack.id.as_bytes(), meta.into_bytes());
        self.db.write(batch).map_err(|e| self.err(&e))
    }

    /// True when the pack is indexed.
    ///
    /// # Errors
    /// [`Error::Index`].
    pub fn has_pack(&self, id: &PackId) -> Result<bool> {
        Ok(self
            .db
            .get_pinned_cf(self.cf(CF_PACKS)?, id.as_bytes())
            .map_err(|e| self.err(&e))?
            .is_some())
    }

    /// Every indexed pack id.
    ///
    /// # Errors
    /// [`Error::Index`].
    pub fn packs(&self) -> Result<Vec<PackId>> {
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(CF_PACKS)?, rocksdb::IteratorMode::Start) {
            let (k, _) = item.map_err(|e| self.err(&e))?;
            if let Ok(h) = Hash32::from_slice(&k) {
                out.push(PackId::new(h));
            }
        }
        Ok(out)
    }

    /// Marks a segment as loaded.
    ///
    /// # Errors
    /// [`Error::Index`].
    pub fn add_segment(&self, id: &SegmentId) -> Result<()> {
        self.db
            .put_cf(self.cf(CF_SEGMENTS)?, id.as_bytes(), [])
            .map_err(|e| self.err(&e))
    }

    /// True when the segment was loaded.
    ///
    /// # Errors
    /// [`Error::Index`].
    pub fn has_segment(&self, id: &SegmentId) -> Result<bool> {
        Ok(self
            .db
            .get_pinned_cf(self.cf(CF_SEGMENTS)?, id.as_bytes())
            .map_err(|e| self.err(&e))?
            .is_some())
    }

    /// Records that the chunk `id` has the wire digest `digest`. Compute the digest from
    /// the chunk's bytes yourself: a digest a peer merely announced would let it point
    /// other peers' data at the wrong chunk.
    ///
    /// # Errors
    /// [`Error::Index`].
    pub fn put_wire_digest(&self, digest: &Hash32, id: ChunkId) -> Result<()> {
        self.db
            .put_cf(self.cf(CF_WIRE)?, digest.as_bytes(), id.as_bytes())
            .map_err(|e| self.err(&e))
    }

    /// The chunk with this wire digest, when it is recorded and the chunk is indexed.
    ///
    /// # Errors
    /// [`Error::Index`].
    pub fn wire_digest(&self, digest: &Hash32) -> Result<Option<ChunkId>> {
        let v = self
            .db
            .get_pinned_cf(self.cf(CF_WIRE)?, digest.as_bytes())
            .map_err(|e| self.err(&e))?;
        let Some(id) = v.and_then(|b| Hash32::from_slice(&b).ok()).map(ChunkId::new) else {
            return Ok(None);
        };
        Ok(self.contains(&BlobId::from(id))?.then_some(id))
    }

    /// Records that a layer snapshot `id` was pushed as a stream with `digest`
    /// (`sha256:<hex>`), so a later push announcing that digest need not be sent: the same
    /// layer compressed another way has another digest but the same snapshot.
    ///
    /// # Errors
    /// [`Error::Index`].
    pub fn put_layer_digest(&self, digest: &str, id: SnapshotId) -> Result<()> {
        self.db
            .put_cf(self.cf(CF_LAYERS)?, digest.as_bytes(), id.as_bytes())
            .map_err(|e| self.err(&e))
    }

    /// The layer snapshot recorded for a stream digest, if any. The caller checks that
    /// the snapshot still exists.
    ///
    /// # Errors
    /// [`Error::Index`].
    pub fn layer_digest(&self, digest: &str) -> Result<Option<SnapshotId>> {
        let v = self
            .db
            .get_pinned_cf(self.cf(CF_LAYERS)?, digest.as_bytes())
            .map_err(|e| self.err(&e))?;
        Ok(v.and_then(|b| Hash32::from_slice(&b).ok()).map(SnapshotId::new))
    }

    /// Removes every entry (the cache is about to be rebuilt).
    ///
    /// # Errors
    /// [`Error::Index`].
    pub fn clear(&self) -> Result<()> {
        for name in ALL_CFS {
            let cf = self.cf(name)?;
            let mut batch = WriteBatch::default();
            for item in self.db.iterator_cf(cf, rocksdb::IteratorMode::Start) {
                let (k, _) = item.map_err(|e| self.err(&e))?;
                batch.delete_cf(cf, k);
            }
            self.db.write(batch).map_err(|e| self.err(&e))?;
        }
        Ok(())
    }

    /// Number of indexed blobs (an estimate from RocksDB).
    pub fn approximate_blobs(&self) -> u64 {
        self.cf(CF_BLOBS)
            .ok()
            .and_then(|cf| {
                self.db
                    .property_int_value_cf(cf, "rocksdb.estimate-num-keys")
                    .ok()
                    .flatten()
            })
            .unwrap_or(0)
    }
}

fn location(pack: PackId, pack_kind: PackKind, e: &PackEntry) -> BlobLocation {
    BlobLocation {
        pack,
        pack_kind,
        offset: e.offset,
        sealed_len: e.sealed_len,
        raw_len: e.raw_len,
        kind: e.kind,
    }
}

fn index_err(path: &Path, e: &rocksdb::Error) -> Error {
    let mut message = e.to_string();
    if message.contains("lock") {
        message.push_str(" (is another amber process using this repository?)");
    }
    Error::Index {
        path: path.to_path_buf(),
        message,
    }
}
