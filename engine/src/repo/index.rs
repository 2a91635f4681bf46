//! The local index: a RocksDB cache mapping blob ids to pack locations, and wire digests
//! (what a pushing client can compute) to chunk ids. It can always be rebuilt from the
//! store (losing the wire digests only costs re-sending); it never holds plaintext.

mod damage;
mod marks;
mod refs;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rocksdb::{ColumnFamilyDescriptor, DB, Options, WriteBatch};

use damage::DamageLog;
use marks::PackMarks;
pub use marks::WriterEpoch;
use refs::{CF_COUNTED, CF_REFS, CF_UNREAD};
pub use refs::{Node, RefBatch, RefsGuard};

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
const ALL_CFS: [&str; 8] = [
    CF_BLOBS,
    CF_PACKS,
    CF_SEGMENTS,
    CF_WIRE,
    CF_LAYERS,
    CF_REFS,
    CF_COUNTED,
    CF_UNREAD,
];
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

/// How a process uses the index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IndexMode {
    /// Open it for writing; fails with [`Error::IndexBusy`] while another process has it.
    #[default]
    Write,
    /// Open it for writing when it is free and the disk has room, otherwise read-only:
    /// what this process learns (new packs, damage) is then kept in memory only.
    Read,
}

/// Free bytes the index's file system must have before RocksDB is opened for writing:
/// Debian's RocksDB aborts the process (an assertion) when opening on a full disk.
pub const MIN_FREE_FOR_WRITING: u64 = 16 << 20;

/// What a read-only index learned since it was opened.
#[derive(Debug, Default)]
struct Overlay {
    /// The on-disk index turned out stale: ignore it.
    ignore_db: bool,
    blobs: HashMap<BlobId, BlobLocation>,
    packs: HashSet<PackId>,
    segments: HashSet<SegmentId>,
    wire: HashMap<Hash32, ChunkId>,
    layers: HashMap<String, SnapshotId>,
}

/// The RocksDB index of one vault, opened for writing or read-only (see [`IndexMode`]).
pub struct Index {
    /// `None` for an index held in memory only (not even a read-only open worked).
    db: Option<DB>,
    path: PathBuf,
    /// `Some` when read-only (or in memory).
    overlay: Option<Mutex<Overlay>>,
    damage: DamageLog,
    /// Packs in an archive class or condemned (as the store's listings last said): their
    /// blobs are not offered for reuse; and the packs this process wrote or reused.
    marks: PackMarks,
    /// Held by the one compaction of this process that is bringing the reference
    /// counts up to date.
    counting: Mutex<()>,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = if self.overlay.is_some() {
            "read-only"
        } else {
            "writable"
        };
        write!(f, "Index({}, {mode})", self.path.display())
    }
}

impl Index {
    /// Opens (creating if needed) the index at `path` for writing.
    ///
    /// # Errors
    /// [`Error::IndexBusy`] when another process holds it; [`Error::Io`] naming ENOSPC
    /// when its file system is (nearly) full; [`Error::Index`].
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, IndexMode::Write)
    }

    /// Opens the index at `path` as `mode` says.
    ///
    /// # Errors
    /// As [`Index::open`] for [`IndexMode::Write`]; for [`IndexMode::Read`] only when
    /// not even a read-only open works.
    pub fn open_with(path: &Path, mode: IndexMode) -> Result<Self> {
        let damage = DamageLog::open(&path.with_file_name(DAMAGE_LOG));
        let room = free_bytes(path).is_none_or(|free| free >= MIN_FREE_FOR_WRITING);
        match (mode, room) {
            (IndexMode::Write, false) => return Err(disk_full(path)),
            (IndexMode::Read, false) => return Self::open_read_only(path, damage),
            _ => {}
        }
        match Self::open_writable(path) {
            Ok(db) => Ok(Index {
                db: Some(db),
                path: path.to_path_buf(),
                overlay: None,
                damage,
                marks: PackMarks::default(),
                counting: Mutex::default(),
            }),
            // Busy, or broken: a reader still works (read-only, or from the store alone).
            Err(_) if mode == IndexMode::Read => Self::open_read_only(path, damage),
            Err(e) => Err(e),
        }
    }

    fn options() -> Options {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_keep_log_file_num(2);
        opts
    }

    fn descriptors() -> [ColumnFamilyDescriptor; 8] {
        ALL_CFS.map(|n| ColumnFamilyDescriptor::new(n, Options::default()))
    }

    fn open_writable(path: &Path) -> Result<DB> {
        DB::open_cf_descriptors(&Self::options(), path, Self::descriptors()).map_err(|e| {
            let message = e.to_string();
            if message.contains("lock") {
                Error::IndexBusy(path.to_path_buf())
            } else {
                index_err(path, &e)
            }
        })
    }

    /// Read-only: no lock, no write to the index's files. The files are all opened at
    /// once, so a writer compacting them meanwhile cannot pull them away.
    fn open_read_only(path: &Path, damage: DamageLog) -> Result<Self> {
        let mut opts = Self::options();
        opts.set_max_open_files(-1);
        // A writer's compaction may race the first attempt; a missing index is not retried.
        for _ in 0..READ_ONLY_ATTEMPTS {
            if !path.join("CURRENT").exists() {
                break;
            }
            if let Ok(db) = DB::open_cf_descriptors_read_only(&opts, path, Self::descriptors(), false) {
                return Ok(Index {
                    db: Some(db),
                    path: path.to_path_buf(),
                    overlay: Some(Mutex::default()),
                    damage,
                    marks: PackMarks::default(),
                    counting: Mutex::default(),
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        // Not even read-only (no index yet and no room to make one, or a broken one): a
        // reader can still work from the store alone, with an index in memory.
        Ok(Index {
            db: None,
            path: path.to_path_buf(),
            overlay: Some(Mutex::new(Overlay {
                ignore_db: true,
                ..Overlay::default()
            })),
            damage,
            marks: PackMarks::default(),
            counting: Mutex::default(),
        })
    }

    fn db(&self) -> Result<&DB> {
        self.db.as_ref().ok_or_else(|| Error::Index {
            path: self.path.clone(),
            message: "the index is held in memory only".into(),
        })
    }

    /// True when this process opened the index read-only (another process writes to it,
    /// or its disk is full).
    pub fn is_read_only(&self) -> bool {
        self.overlay.is_some()
    }

    /// Deletes the index at `path` (it is a cache). The damage log beside it stays: a
    /// rebuild that reads only pack directories cannot tell a damaged blob from a good one.
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
        self.db()?.cf_handle(name).ok_or_else(|| Error::Index {
            path: self.path.clone(),
            message: format!("column family {name} missing"),
        })
    }

    /// Runs `f` on the overlay of a read-only index; `None` for a writable one.
    fn with_overlay<T>(&self, f: impl FnOnce(&mut Overlay) -> T) -> Result<Option<T>> {
        let Some(overlay) = &self.overlay else { return Ok(None) };
        let mut o = overlay
            .lock()
            .map_err(|_| Error::Pipeline("index overlay poisoned".into()))?;
        Ok(Some(f(&mut o)))
    }

    /// The value under `key` in column family `cf`, after the overlay has had its say:
    /// `Ok(None)` from `overlaid` means "not in the overlay, ask RocksDB" unless the
    /// on-disk index is to be ignored.
    fn get_raw(&self, cf: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if self.with_overlay(|o| o.ignore_db)? == Some(true) {
            return Ok(None);
        }
        let v = self.db()?.get_pinned_cf(self.cf(cf)?, key).map_err(|e| self.err(&e))?;
        Ok(v.map(|b| b.to_vec()))
    }

    /// Where a blob is, if indexed.
    ///
    /// # Errors
    /// [`Error::Index`].
    pub fn lookup(&self, id: &BlobId) -> Result<Option<BlobLocation>> {
        if let Some(Some(loc)) = self.with_overlay(|o| o.blobs.get(id).copied())? {
            return Ok(Some(loc));
        }
        match self.get_raw(CF_BLOBS, id.as_bytes())? {
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
        Ok(self.lookup(id)?.is_some())
    }

    /// True when the blob is indexed, not known to be damaged, and not in an archived or
    /// condemned pack: what deduplication and the reuse of a parent's content may rely on.
    /// A `true` notes the pack as touched (see [`Index::touched`]).
    ///
    /// # Errors
    /// [`Error::Index`].
    pub fn holds_good(&self, id: &BlobId) -> Result<bool> {
        Ok(self.reusable(id)?.is_some())
    }

    /// Where a blob is when it may be reused (as [`Index::holds_good`]), noting its pack
    /// as touched.
    ///
    /// # Errors
    /// [`Error::Index`].
    pub fn reusable(&self, id: &BlobId) -> Result<Option<BlobLocation>> {
        let Some(loc) = self.lookup(id)? else { return Ok(None) };
        if self.damage.get(id).is_some() || !self.marks.reusable(&loc.pack) {
            return Ok(None);
        }
        self.marks.touch(loc.pack);
        Ok(Some(loc))
    }

    /// Records which packs are in an archive class now (from a listing of the store).
    pub fn set_cold(&self, packs: HashSet<PackId>) {
        self.marks.set_cold(packs);
    }

    /// Whether pack `id` was in an archive class at the last listing.
    pub fn is_cold(&self, id: &PackId) -> bool {
        self.marks.is_cold(id)
    }

    /// Records which packs compactions have condemned (from the store's records).
    pub fn set_condemned(&self, packs: HashSet<PackId>) {
        self.marks.set_condemned(packs);
    }

    /// Whether pack `id` was condemned at the last look.
    pub fn is_condemned(&self, id: &PackId) -> bool {
        self.marks.is_condemned(id)
    }

    /// Notes that this process wrote pack `id` (its blobs are what its snapshots use).
    pub fn touch(&self, id: PackId) {
        self.marks.touch(id);
    }

    /// Every pack this process wrote or offered blobs of for reuse.
    pub fn touched(&self) -> Vec<PackId> {
        self.marks.touched()
    }

    /// Whether this process wrote pack `id` or offered a blob of it for reuse.
    pub fn is_touched(&self, id: &PackId) -> bool {
        self.marks.is_touched(id)
    }

    /// Whether a writer of this process running now may rely on pack `id`: it wrote the
    /// pack or offered a blob of it for reuse since the oldest running writer started.
    pub fn is_busy(&self, id: &PackId) -> bool {
        self.marks.is_busy(id)
    }

    /// Whether the last look at the store found any pack condemned.
    pub fn any_condemned(&self) -> bool {
        self.marks.any_condemned()
    }

    /// Notes a [`crate::repo::writer::BlobWriter`] started (an ingest in progress).
    pub fn writer_started(&self) -> WriterEpoch {
        self.marks.writer_started()
    }

    /// Notes the writer started at `epoch` ended.
    pub fn writer_ended(&self, epoch: WriterEpoch) {
        self.marks.writer_ended(epoch);
    }

    /// Writers of this process alive now.
    pub fn writers(&self) -> usize {
        self.marks.writers()
    }

    /// Forgets that pack `id` was touched (its blobs were copied elsewhere).
    pub fn untouch(&self, id: &PackId) {
        self.marks.untouch(id);
    }

    /// Records every blob of a pack, atomically with the pack itself. Blobs marked
    /// damaged are marked healed: the pack holds a good copy.
    ///
    /// # Errors
    /// [`Error::Index`].
    pub fn add_pack(&self, pack: &PackRecord) -> Result<()> {
        self.damage.heal(pack.entries.iter().map(|e| e.id));
        self.reindex_pack(pack)
    }

    /// Records every blob of a pack the vault has held all along (an index rebuilt from
    /// the packs): damage marks stay, since a pack's directory says nothing of whether
    /// its blobs are whole.
    ///
    /// # Errors
    /// [`Error::Index`].
    pub fn reindex_pack(&self, pack: &PackRecord) -> Result<()> {
        let added = self.with_overlay(|o| {
            for e in &pack.entries {
                o.blobs.insert(e.id, location(pack.id, pack.kind, e));
            }
            o.packs.insert(pack.id);
        })?;
        if added.is_some() {
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        let blobs = self.cf(CF_BLOBS)?;
        for e in &pack.entries {
            batch.put_cf(blobs, e.id.as_bytes(), location(pack.id, pack.kind, e).encode());
        }
        let mut meta = crate::format::codec::Writer::with_capacity(9);
        meta.u8(pack.kind as u8);
        meta.u64(pack.len);
        batch.put_cf(self.cf(CF_PACKS)?, pack.id.as_bytes(), meta.into_bytes());
        self.db()?.write(batch).map_err(|e| self.err(&e))
    }

    /// Removes pack `id` and those of `blobs` that the index places in it (the pack was
    /// deleted). An index opened read-only keeps them: it is rebuilt when next opened.
    ///
    /// # Errors
    /// [`Error::Index`].
    pub fn forget_pack(&self, id: &PackId, blobs: &[BlobId]) -> Result<()> {
        if self.overlay.is_some() {
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        let cf = self.cf(CF_BLOBS)?;
        for b in blobs {
            if self.lookup(b)?.is_some_and(|loc| loc.pack == *id) {
                batch.delete_cf(cf, b.as_bytes());
            }
        }
        batch.delete_cf(self.cf(CF_PACKS)?, id.as_bytes());
        self.db()?.write(batch).map_err(|e| self.err(&e))
    }

    /// True when the pack is indexed.
    ///
    /// # Errors
    /// [`Error::Index`].
    pub fn has_pack(&self, id: &PackId) -> Result<bool> {
        if self.with_overlay(|o| o.packs.contains(id))? == Some(true) {
            return Ok(true);
        }
        Ok(self.get_raw(CF_PACKS, id.as_bytes())?.is_some())
    }

    /// Every indexed pack id.
    ///
    /// # Errors
    /// [`Error::Index`].
    pub fn packs(&self) -> Result<Vec<PackId>> {
        let (mut out, ignore_db) = self
            .with_overlay(|o| (o.packs.iter().copied().collect::<Vec<_>>(), o.ignore_db))?
            .unwrap_or_default();
        if ignore_db {
            return Ok(out);
        }
        for item in self.db()?.iterator_cf(self.cf(CF_PACKS)?, rocksdb::IteratorMode::Start) {
            let (k, _) = item.map_err(|e| self.err(&e))?;
            if let Ok(h) = Hash32::from_slice(&k) {
                out.push(PackId::new(h));
            }
        }
        Ok(out)
    }

    /// Every indexed pack with the length it had when it was indexed.
    ///
    /// # Errors
    /// [`Error::Index`].
    pub fn pack_lengths(&self) -> Result<Vec<(PackId, u64)>> {
        let mut out = Vec::new();
        for id in self.packs()? {
            let len = match self.get_raw(CF_PACKS, id.as_bytes())? {
                Some(v) => crate::format::codec::Reader::new(v.get(1..).unwrap_or_default())
                    .u64("pack length")
                    .unwrap_or(0),
                // Learnt by a read-only index: its length was checked when it was read.
                None => continue,
            };
            out.push((id, len));
        }
        Ok(out)
    }

    /// Marks a segment as loaded.
    ///
    /// # Errors
    /// [`Error::Index`].
    pub fn add_segment(&self, id: &SegmentId) -> Result<()> {
        if self.with_overlay(|o| o.segments.insert(*id))?.is_some() {
            return Ok(());
        }
        self.db()?
            .put_cf(self.cf(CF_SEGMENTS)?, id.as_bytes(), [])
            .map_err(|e| self.err(&e))
    }

    /// True when the segment was loaded.
    ///
    /// # Errors
    /// [`Error::Index`].
    pub fn has_segment(&self, id: &SegmentId) -> Result<bool> {
        if self.with_overlay(|o| o.segments.contains(id))? == Some(true) {
            return Ok(true);
        }
        Ok(self.get_raw(CF_SEGMENTS, id.as_bytes())?.is_some())
    }

    /// Records that the chunk `id` has the wire digest `digest`. Compute the digest from
    /// the chunk's bytes yourself: a digest a peer merely announced would let it point
    /// other peers' data at the wrong chunk.
    ///
    /// # Errors
    /// [`Error::Index`].
    pub fn put_wire_digest(&self, digest: &Hash32, id: ChunkId) -> Result<()> {
        if self.with_overlay(|o| o.wire.insert(*digest, id))?.is_some() {
            return Ok(());
        }
        self.db()?
            .put_cf(self.cf(CF_WIRE)?, digest.as_bytes(), id.as_bytes())
            .map_err(|e| self.err(&e))
    }

    /// The chunk with this wire digest, when it is recorded and the chunk is indexed and
    /// not known damaged.
    ///
    /// # Errors
    /// [`Error::Index`].
    pub fn wire_digest(&self, digest: &Hash32) -> Result<Option<ChunkId>> {
        let id = match self.with_overlay(|o| o.wire.get(digest).copied())? {
            Some(Some(id)) => Some(id),
            _ => self
                .get_raw(CF_WIRE, digest.as_bytes())?
                .and_then(|b| Hash32::from_slice(&b).ok())
                .map(ChunkId::new),
        };
        let Some(id) = id else { return Ok(None) };
        Ok(self.holds_good(&BlobId::from(id))?.then_some(id))
    }

    /// Records that a layer snapshot `id` was pushed as a stream with `digest`
    /// (`sha256:<hex>`), so a later push announcing that digest need not be sent: the same
    /// layer compressed another way has another digest but the same snapshot.
    ///
    /// # Errors
    /// [`Error::Index`].
    pub fn put_layer_digest(&self, digest: &str, id: SnapshotId) -> Result<()> {
        if self
            .with_overlay(|o| o.layers.insert(digest.to_string(), id))?
            .is_some()
        {
            return Ok(());
        }
        self.db()?
            .put_cf(self.cf(CF_LAYERS)?, digest.as_bytes(), id.as_bytes())
            .map_err(|e| self.err(&e))
    }

    /// The layer snapshot recorded for a stream digest, if any. The caller checks that
    /// the snapshot still exists.
    ///
    /// # Errors
    /// [`Error::Index`].
    pub fn layer_digest(&self, digest: &str) -> Result<Option<SnapshotId>> {
        if let Some(Some(id)) = self.with_overlay(|o| o.layers.get(digest).copied())? {
            return Ok(Some(id));
        }
        let v = self.get_raw(CF_LAYERS, digest.as_bytes())?;
        Ok(v.and_then(|b| Hash32::from_slice(&b).ok()).map(SnapshotId::new))
    }

    /// Records that blob `id` was found damaged or missing (`reason` says how), so that
    /// deduplication no longer offers it and content naming it is not inherited. Kept
    /// even by a read-only index (in the damage log beside it).
    pub fn mark_damaged(&self, id: BlobId, reason: &str) {
        self.damage.mark(id, reason);
    }

    /// Forgets that these blobs were found damaged: each was read whole from the pack the
    /// index places it in, and checked (`amber verify --read-data`).
    pub fn heal(&self, ids: impl Iterator<Item = BlobId>) {
        self.damage.heal(ids);
    }

    /// Why blob `id` is known damaged, if it is.
    pub fn damaged(&self, id: &BlobId) -> Option<String> {
        self.damage.get(id)
    }

    /// Number of blobs known damaged.
    pub fn damaged_count(&self) -> usize {
        self.damage.len()
    }

    /// Removes every entry (the cache is about to be rebuilt). Damage marks stay: a
    /// rebuild that reads only pack directories cannot tell a damaged blob from a good one.
    ///
    /// # Errors
    /// [`Error::Index`].
    pub fn clear(&self) -> Result<()> {
        self.clear_families(&ALL_CFS)
    }

    /// Removes what says where blobs are (blobs, packs, loaded segments), keeping wire
    /// and layer digests. Damage marks stay.
    ///
    /// # Errors
    /// [`Error::Index`].
    pub fn clear_locations(&self) -> Result<()> {
        self.clear_families(&[CF_BLOBS, CF_PACKS, CF_SEGMENTS])
    }

    fn clear_families(&self, families: &[&'static str]) -> Result<()> {
        let cleared = self.with_overlay(|o| {
            *o = Overlay {
                ignore_db: true,
                ..Overlay::default()
            };
        })?;
        if cleared.is_some() {
            return Ok(());
        }
        for &name in families {
            let cf = self.cf(name)?;
            let mut batch = WriteBatch::default();
            for item in self.db()?.iterator_cf(cf, rocksdb::IteratorMode::Start) {
                let (k, _) = item.map_err(|e| self.err(&e))?;
                batch.delete_cf(cf, k);
            }
            self.db()?.write(batch).map_err(|e| self.err(&e))?;
        }
        Ok(())
    }

    /// Number of indexed blobs (an estimate from RocksDB).
    pub fn approximate_blobs(&self) -> u64 {
        let overlay = self.with_overlay(|o| o.blobs.len() as u64).ok().flatten().unwrap_or(0);
        let db = self
            .cf(CF_BLOBS)
            .ok()
            .and_then(|cf| {
                self.db
                    .as_ref()?
                    .property_int_value_cf(cf, "rocksdb.estimate-num-keys")
                    .ok()
                    .flatten()
            })
            .unwrap_or(0);
        overlay + db
    }
}

/// Attempts at a read-only open (a writer's compaction may race the first).
const READ_ONLY_ATTEMPTS: usize = 5;

/// The damage log's file name, beside the index directory.
const DAMAGE_LOG: &str = "damaged.log";

/// Free bytes on the file system holding `path` (or its nearest existing parent).
fn free_bytes(path: &Path) -> Option<u64> {
    let existing = path.ancestors().find(|p| p.exists())?;
    let st = nix::sys::statvfs::statvfs(existing).ok()?;
    Some(st.blocks_available().saturating_mul(st.fragment_size()))
}

fn disk_full(path: &Path) -> Error {
    let free = free_bytes(path).unwrap_or(0);
    Error::io(
        path,
        std::io::Error::new(
            std::io::ErrorKind::StorageFull,
            format!(
                "ENOSPC: only {free} bytes free on the file system of the index cache (writing needs at least \
                 {MIN_FREE_FOR_WRITING}); free space and run the command again: nothing was changed"
            ),
        ),
    )
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
    Error::Index {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::blob::BlobKind;
    use crate::format::pack::{PackEntry, PackKind};

    fn record(pack: u8, blob: u8) -> PackRecord {
        PackRecord {
            id: PackId::new(Hash32::from_bytes([pack; 32])),
            kind: PackKind::Data,
            len: 100,
            entries: vec![PackEntry {
                id: BlobId::new(Hash32::from_bytes([blob; 32])),
                kind: BlobKind::Chunk,
                offset: 16,
                sealed_len: 40,
                raw_len: 11,
            }],
        }
    }

    #[test]
    fn a_reader_opens_read_only_while_a_writer_holds_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        let writer = Index::open(&path).unwrap();
        writer.add_pack(&record(1, 1)).unwrap();
        assert!(matches!(Index::open(&path), Err(Error::IndexBusy(_))));
        let reader = Index::open_with(&path, IndexMode::Read).unwrap();
        assert!(reader.is_read_only());
        assert!(reader.contains(&BlobId::new(Hash32::from_bytes([1; 32]))).unwrap());
        // What the reader learns stays in memory; the writer's index is untouched.
        reader.add_pack(&record(2, 2)).unwrap();
        assert!(reader.has_pack(&PackId::new(Hash32::from_bytes([2; 32]))).unwrap());
        assert!(!writer.has_pack(&PackId::new(Hash32::from_bytes([2; 32]))).unwrap());
        reader.clear().unwrap();
        assert!(
            reader.packs().unwrap().is_empty(),
            "a cleared read-only index ignores the disk"
        );
    }

    #[test]
    fn damage_marks_stop_deduplication_until_a_good_copy_is_indexed() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(&dir.path().join("index")).unwrap();
        let blob = BlobId::new(Hash32::from_bytes([3; 32]));
        index.add_pack(&record(1, 3)).unwrap();
        assert!(index.holds_good(&blob).unwrap());
        index.mark_damaged(blob, "authentication failed");
        assert!(!index.holds_good(&blob).unwrap());
        assert_eq!(index.damaged_count(), 1);
        drop(index);
        let reopened = Index::open(&dir.path().join("index")).unwrap();
        assert!(!reopened.holds_good(&blob).unwrap(), "the mark survives reopening");
        reopened.add_pack(&record(2, 3)).unwrap();
        assert!(reopened.holds_good(&blob).unwrap(), "a new copy heals it");
    }

    #[test]
    fn a_reader_without_any_index_works_from_memory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("index");
        let reader = Index::open_with(&path, IndexMode::Read).unwrap();
        reader.add_pack(&record(1, 1)).unwrap();
        assert!(reader.contains(&BlobId::new(Hash32::from_bytes([1; 32]))).unwrap());
    }
}
