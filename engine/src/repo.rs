//! An open vault: config, keys, the index cache, and reading and committing objects.

pub mod audit;
pub mod condemned;
pub mod index;
pub mod keys;
pub mod layout;
pub mod objcache;
pub mod sync;
pub mod window;
pub mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::backend::{DynBackend, PutMode, PutOutcome};
use crate::chunker::{ChunkerParams, GearTable};
use crate::crypto::{KdfParams, MasterKey, VaultKeys, random_array};
use crate::error::{Error, Result};
use crate::format::blob::{self, BlobKind};
use crate::format::chunklist::ListNode;
use crate::format::config::VaultConfig;
use crate::format::snapshot::{self, Snapshot};
use crate::format::tree::TreeNode;
use crate::hash::IdKey;
use crate::id::{BlobId, ChunkId, Hash32, KeySlotId, ListId, SnapshotId, TreeId, VaultId};
use index::{Index, IndexMode};
use keys::KeySlotInfo;
use layout::{CONFIG_KEY, SNAPSHOTS_PREFIX, id_of_key, snapshot_key};

/// Options for a new vault.
#[derive(Clone, Debug)]
pub struct InitOptions {
    /// Argon2id cost of the first key slot.
    pub kdf: KdfParams,
    /// Label of the first key slot.
    pub label: String,
    /// Content chunking, fixed for the life of the vault.
    pub chunker: ChunkerParams,
    /// Block size for volume images (a power of two from 4 KiB to 16 MiB).
    pub block_size: u32,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            kdf: KdfParams::DEFAULT,
            label: String::new(),
            chunker: ChunkerParams::DEFAULT,
            block_size: DEFAULT_BLOCK_SIZE,
        }
    }
}

/// Default block size for volume images; see format-spec/DECISIONS.md for the measurement.
pub const DEFAULT_BLOCK_SIZE: u32 = 256 * 1024;

struct Inner {
    backend: DynBackend,
    config: VaultConfig,
    keys: VaultKeys,
    master: MasterKey,
    index: Index,
    slot: KeySlotId,
    gear: Arc<GearTable>,
    /// When the index last caught up with the store on a miss ([`Repository::locate`]).
    caught_up: std::sync::Mutex<Option<std::time::Instant>>,
    /// Windows of packs read last, for stores where requests are costly.
    windows: window::WindowCache,
    /// Local copies of snapshots and metadata packs, for stores where requests are costly.
    objects: Option<objcache::ObjectCache>,
    /// This vault's part of the state directory (`<cache dir>/<vault id>`).
    state_dir: PathBuf,
}

/// How often a lookup miss may bring the index up to date with the store.
const CATCH_UP_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// An open vault. Cheap to clone; shared by pipeline threads.
#[derive(Clone)]
pub struct Repository {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Repository({})", self.inner.config.vault_id)
    }
}

/// Seconds since the epoch.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl Repository {
    /// Creates a vault in an empty store and opens it.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] when the store has a config; store, crypto and index errors.
    pub fn init(backend: DynBackend, cache_dir: &Path, passphrase: &[u8], opts: &InitOptions) -> Result<Self> {
        if backend.head(CONFIG_KEY)?.is_some() {
            return Err(Error::AlreadyExists(backend.describe()));
        }
        // Several writers may share a store; that is safe only where preconditions hold.
        if let Err(why) = crate::backend::probe_conditional_writes(backend.as_ref())? {
            return Err(Error::InvalidArgument(format!(
                "{} does not honour conditional writes ({why}); Amber needs them so that several writers cannot \
                 overwrite each other's objects. Use a store that does (AWS S3, MinIO, Ceph RGW with \
                 conditional writes enabled)",
                backend.describe()
            )));
        }
        let vault_id = VaultId::new(Hash32::from_bytes(random_array()?));
        if !opts.block_size.is_power_of_two() || !(4096..=16 << 20).contains(&opts.block_size) {
            return Err(Error::InvalidArgument(format!(
                "block size {} is not a power of two from 4 KiB to 16 MiB",
                opts.block_size
            )));
        }
        let config = VaultConfig {
            chunker: opts.chunker,
            block_size: opts.block_size,
            ..VaultConfig::new(vault_id, now_secs())
        };
        let master = MasterKey::generate()?;
        let keys = master.subkeys(&vault_id)?;
        keys::create_slot(
            backend.as_ref(),
            &vault_id,
            &master,
            passphrase,
            opts.kdf,
            &opts.label,
            config.created,
        )?;
        // The config goes last: a store without it is not a repository yet.
        if backend.put(CONFIG_KEY, &config.encode(&keys.config_mac), PutMode::CreateOnly)? == PutOutcome::AlreadyExisted
        {
            return Err(Error::AlreadyExists(backend.describe()));
        }
        Self::open(backend, cache_dir, passphrase)
    }

    /// Opens a vault with a passphrase for writing and brings the index up to date with
    /// the store; fails at once when another process holds the index.
    ///
    /// # Errors
    /// [`Error::NoRepository`], wrong passphrase, corruption, [`Error::IndexBusy`], index
    /// errors.
    pub fn open(backend: DynBackend, cache_dir: &Path, passphrase: &[u8]) -> Result<Self> {
        Self::open_with(backend, cache_dir, passphrase, &OpenOptions::default())
    }

    /// Opens a vault as `opts` says: for writing (waiting for another process's index
    /// lock when asked), or for reading, which also works while another process writes
    /// and on a full disk.
    ///
    /// # Errors
    /// As [`Repository::open`].
    pub fn open_with(backend: DynBackend, cache_dir: &Path, passphrase: &[u8], opts: &OpenOptions<'_>) -> Result<Self> {
        let raw = match backend.get(CONFIG_KEY) {
            Ok(raw) => raw,
            Err(crate::backend::BackendError::NotFound { .. }) => {
                return Err(Error::NoRepository(backend.describe()));
            }
            Err(e) => return Err(e.into()),
        };
        let (config, mac) = VaultConfig::decode(&raw).map_err(|e| corrupt_config(e.to_string()))?;
        let (master, slot) = keys::open_any(backend.as_ref(), &config.vault_id, passphrase)?;
        let keys = master.subkeys(&config.vault_id)?;
        if !config.verify(&mac, &keys.config_mac) {
            return Err(corrupt_config("its MAC does not match: it was changed".into()));
        }
        let state_dir = cache_dir.join(config.vault_id.to_hex());
        let index_dir = state_dir.join("index");
        if opts.fresh_index {
            Index::destroy(&index_dir)?;
        }
        if std::fs::create_dir_all(&index_dir).is_err() && opts.mode == IndexMode::Write {
            std::fs::create_dir_all(&index_dir).map_err(|e| Error::io(&index_dir, e))?;
        }
        let index = open_index(&index_dir, opts)?;
        let gear = Arc::new(GearTable::keyed(&keys.chunker_key));
        let objects = backend
            .prefers_large_reads()
            .then(|| objcache::ObjectCache::new(state_dir.join("objects")));
        let repo = Repository {
            inner: Arc::new(Inner {
                backend,
                config,
                keys,
                master,
                index,
                slot,
                gear,
                caught_up: std::sync::Mutex::new(None),
                windows: window::WindowCache::default(),
                objects,
                state_dir,
            }),
        };
        if !opts.fresh_index {
            sync::sync_index(&repo)?;
        }
        Ok(repo)
    }

    /// This vault's part of the state directory: local, deletable, rebuilt as needed.
    pub fn state_dir(&self) -> &Path {
        &self.inner.state_dir
    }

    /// The vault config.
    pub fn config(&self) -> &VaultConfig {
        &self.inner.config
    }
    /// The vault's working keys.
    pub fn keys(&self) -> &VaultKeys {
        &self.inner.keys
    }
    /// The store.
    pub fn backend(&self) -> &DynBackend {
        &self.inner.backend
    }
    /// The index cache.
    pub fn index(&self) -> &Index {
        &self.inner.index
    }
    /// The key slot this session opened.
    pub fn current_slot(&self) -> KeySlotId {
        self.inner.slot
    }

    /// The vault's keyed chunker table.
    pub fn gear_table(&self) -> Arc<GearTable> {
        self.inner.gear.clone()
    }

    /// The content id of a chunk.
    pub fn chunk_id(&self, data: &[u8]) -> ChunkId {
        ChunkId::new(self.inner.keys.ids.chunk.hash(data))
    }

    /// The id key of a content-addressed blob kind (`None` for kinds named otherwise).
    pub fn id_key(&self, kind: BlobKind) -> Option<&IdKey> {
        let ids = &self.inner.keys.ids;
        match kind {
            BlobKind::Chunk => Some(&ids.chunk),
            BlobKind::Tree => Some(&ids.tree),
            BlobKind::ChunkList => Some(&ids.list),
            BlobKind::Snapshot => Some(&ids.snapshot),
            BlobKind::Layout => Some(&ids.layout),
            BlobKind::PackDirectory | BlobKind::IndexSegment => None,
        }
    }

    /// Reads a blob, opens it and, for content-addressed kinds, re-hashes it.
    ///
    /// # Errors
    /// [`Error::MissingBlob`], [`Error::Corrupt`] or authentication errors naming the blob and pack.
    /// A blob found damaged or missing is recorded as such in the index (see
    /// [`Index::mark_damaged`]), so no new snapshot reuses it.
    pub fn read_blob(&self, id: BlobId, kind: BlobKind) -> Result<Vec<u8>> {
        let result = self.read_blob_unmarked(id, kind);
        if let Err(e) = &result
            && is_damage(e)
        {
            self.index().mark_damaged(id, &e.to_string());
        }
        result
    }

    /// Where a blob is. A blob the index does not know may be in a pack another writer
    /// stored since this process last looked (a cluster of servers, CLIs on one bucket):
    /// the index is brought up to date, at most every [`CATCH_UP_EVERY`], and asked again.
    fn locate(&self, id: BlobId) -> Result<index::BlobLocation> {
        if let Some(loc) = self.index().lookup(&id)? {
            return Ok(loc);
        }
        if self.catch_up(false)
            && let Some(loc) = self.index().lookup(&id)?
        {
            return Ok(loc);
        }
        Err(Error::MissingBlob(id.to_hex()))
    }

    /// Brings the index up to date with the store, at most every [`CATCH_UP_EVERY`]
    /// unless `now`; whether it did.
    fn catch_up(&self, now: bool) -> bool {
        let due = {
            let mut last = self
                .inner
                .caught_up
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let due = now || last.is_none_or(|t| t.elapsed() >= CATCH_UP_EVERY);
            if due {
                *last = Some(std::time::Instant::now());
            }
            due
        };
        due && sync::sync_index(self).is_ok()
    }

    /// Reads a blob where the index places it. When that pack is gone (a compaction by
    /// another process deleted it after copying what was in use), the index is brought up
    /// to date and the blob read from where it is now. (The sync drops a pack that is gone
    /// from the index, so a pack that is really lost costs one sync, not one per blob.)
    fn read_blob_unmarked(&self, id: BlobId, kind: BlobKind) -> Result<Vec<u8>> {
        let loc = self.locate(id)?;
        match self.read_located(id, kind, &loc) {
            Err(Error::Backend(crate::backend::BackendError::NotFound { .. })) if self.catch_up(true) => {
                let moved = self.locate(id)?;
                self.read_located(id, kind, &moved)
            }
            other => other,
        }
    }

    fn read_located(&self, id: BlobId, kind: BlobKind, loc: &index::BlobLocation) -> Result<Vec<u8>> {
        let loc = *loc;
        let cached = self.meta_copy(&loc);
        if let Some(cache) = cached {
            match self.open_located(id, kind, &loc, Some(cache)) {
                Ok(plain) => return Ok(plain),
                // The local copy may be what is damaged: forget it and ask the store.
                Err(e) if is_damage(&e) => cache.remove(&layout::pack_key(loc.pack_kind, &loc.pack)),
                Err(e) => return Err(e),
            }
        }
        self.open_located(id, kind, &loc, None)
    }

    /// The local copy to read a metadata pack through, for a store where requests are
    /// costly.
    fn meta_copy(&self, loc: &index::BlobLocation) -> Option<&objcache::ObjectCache> {
        self.inner
            .objects
            .as_ref()
            .filter(|_| loc.pack_kind == crate::format::pack::PackKind::Meta)
    }

    /// The sealed bytes of a located blob: from the local copy of its pack when `copy` is
    /// given (fetching and keeping the whole pack first), else from the store.
    fn sealed_bytes(&self, loc: &index::BlobLocation, copy: Option<&objcache::ObjectCache>) -> Result<Vec<u8>> {
        let key = layout::pack_key(loc.pack_kind, &loc.pack);
        let (offset, len) = (u64::from(loc.offset), u64::from(loc.sealed_len));
        if let Some(cache) = copy {
            if let Some(bytes) = cache.get_range(&key, offset, len) {
                return Ok(bytes);
            }
            let whole = self.backend().get(&key)?;
            cache.put_pack(&key, &loc.pack, &whole);
            let range = usize::try_from(offset).ok().zip(usize::try_from(offset + len).ok());
            return range
                .and_then(|(from, to)| whole.get(from..to))
                .map(<[u8]>::to_vec)
                .ok_or_else(|| crate::backend::BackendError::OutOfRange { key, offset, len }.into());
        }
        Ok(if self.backend().prefers_large_reads() {
            self.inner.windows.read(self.backend().as_ref(), &key, offset, len)?
        } else {
            self.backend().get_range(&key, offset, len)?
        })
    }

    fn open_located(
        &self,
        id: BlobId,
        kind: BlobKind,
        loc: &index::BlobLocation,
        copy: Option<&objcache::ObjectCache>,
    ) -> Result<Vec<u8>> {
        let sealed = self.sealed_bytes(loc, copy)?;
        let plain = blob::open_blob(&self.keys().seal_key, kind, id.hash(), &sealed, loc.raw_len as usize)
            .map_err(|e| in_pack(e, kind, id, &loc.pack))?;
        if self.id_key(kind).is_some_and(|k| k.hash(&plain) != *id.hash()) {
            return Err(Error::Corrupt {
                kind: kind.name(),
                id: id.to_hex(),
                detail: format!("content does not hash to its id (pack {})", loc.pack),
            });
        }
        Ok(plain)
    }

    /// Reads a chunk.
    ///
    /// # Errors
    /// As [`Repository::read_blob`].
    pub fn read_chunk(&self, id: ChunkId) -> Result<Vec<u8>> {
        self.read_blob(id.into(), BlobKind::Chunk)
    }

    /// Reads and decodes a tree node.
    ///
    /// # Errors
    /// As [`Repository::read_blob`], plus format errors.
    pub fn load_tree(&self, id: TreeId) -> Result<TreeNode> {
        let bytes = self.read_blob(id.into(), BlobKind::Tree)?;
        TreeNode::decode(&bytes).map_err(|e| Error::Corrupt {
            kind: "tree",
            id: id.to_hex(),
            detail: e.to_string(),
        })
    }

    /// Reads and decodes a chunk-list node.
    ///
    /// # Errors
    /// As [`Repository::read_blob`], plus format errors.
    pub fn load_list(&self, id: ListId) -> Result<ListNode> {
        let bytes = self.read_blob(id.into(), BlobKind::ChunkList)?;
        ListNode::decode(&bytes).map_err(|e| Error::Corrupt {
            kind: "chunk list",
            id: id.to_hex(),
            detail: e.to_string(),
        })
    }

    /// Seals and stores a snapshot object, create-only: the commit point of a snapshot.
    /// Just before, blobs it may use from packs a compaction has condemned since they were
    /// offered for reuse are copied out ([`condemned::rescue_before_commit`]).
    ///
    /// # Errors
    /// Store and crypto errors.
    pub fn commit_snapshot(&self, snap: &Snapshot) -> Result<SnapshotId> {
        snap.validate()?;
        let plain = snap.encode();
        let id = SnapshotId::new(self.keys().ids.snapshot.hash(&plain));
        let file = snapshot::seal_file(&self.keys().seal_key, &id, &plain)?;
        test_pause_before_commit();
        condemned::rescue_before_commit(self, snap)?;
        self.backend().put(&snapshot_key(&id), &file, PutMode::CreateOnly)?;
        Ok(id)
    }

    /// Reads, opens and verifies one snapshot object (from its local copy when the store is
    /// costly to ask and the copy verifies).
    ///
    /// # Errors
    /// Store, crypto and format errors naming the snapshot.
    pub fn load_snapshot(&self, id: SnapshotId) -> Result<Snapshot> {
        let key = snapshot_key(&id);
        let cache = self.inner.objects.as_ref();
        if let Some(bytes) = cache.and_then(|c| c.get(&key)) {
            match self.decode_snapshot(id, &bytes) {
                Ok(snap) => return Ok(snap),
                Err(_) => cache.into_iter().for_each(|c| c.remove(&key)),
            }
        }
        let bytes = self.backend().get(&key)?;
        let snap = self.decode_snapshot(id, &bytes)?;
        if let Some(cache) = cache {
            cache.put(&key, &bytes);
        }
        Ok(snap)
    }

    /// Opens, verifies and decodes the bytes of snapshot object `id`.
    fn decode_snapshot(&self, id: SnapshotId, bytes: &[u8]) -> Result<Snapshot> {
        let corrupt = |detail: String| Error::Corrupt {
            kind: "snapshot",
            id: id.to_hex(),
            detail,
        };
        let body = snapshot::open_file(&self.keys().seal_key, &id, bytes)?;
        if self.keys().ids.snapshot.hash(&body) != *id.hash() {
            return Err(corrupt("content does not hash to its id".into()));
        }
        Snapshot::decode(&body).map_err(|e| corrupt(e.to_string()))
    }

    /// Every snapshot that opens, oldest first; damaged ones are left out (see
    /// [`Repository::snapshot_list`] to learn which).
    ///
    /// # Errors
    /// Store errors listing them.
    pub fn snapshots(&self) -> Result<Vec<(SnapshotId, Snapshot)>> {
        Ok(self.snapshot_list()?.snapshots)
    }

    /// The ids of every snapshot the store holds, from one listing (none is opened).
    ///
    /// # Errors
    /// Store errors listing them.
    pub fn snapshot_ids(&self) -> Result<Vec<SnapshotId>> {
        let listing = self.backend().list(SNAPSHOTS_PREFIX)?;
        Ok(listing
            .iter()
            .filter_map(|obj| id_of_key(&obj.key))
            .map(SnapshotId::new)
            .collect())
    }

    /// Every snapshot, oldest first, and those that fail to open with why: one damaged
    /// snapshot object never hides the others.
    ///
    /// # Errors
    /// Store errors listing them.
    pub fn snapshot_list(&self) -> Result<SnapshotList> {
        let mut list = SnapshotList::default();
        for id in self.snapshot_ids()? {
            match self.load_snapshot(id) {
                Ok(s) => list.snapshots.push((id, s)),
                Err(e @ (Error::Corrupt { .. } | Error::Crypto(_) | Error::Format(_))) => {
                    list.damaged.push((id, e.to_string()));
                }
                Err(e) => return Err(e),
            }
        }
        list.snapshots.sort_by_key(|(id, s)| (s.time_ns, *id));
        Ok(list)
    }

    /// Resolves a full id, a unique hex prefix, or `latest` (optionally within one environment).
    ///
    /// # Errors
    /// [`Error::NoSuchSnapshot`] or [`Error::AmbiguousSnapshot`].
    pub fn resolve_snapshot(&self, name: &str, env: Option<&str>) -> Result<(SnapshotId, Snapshot)> {
        let in_env = |s: &Snapshot| env.is_none_or(|e| s.environment == e);
        // A full id is read directly: other snapshots (damaged ones too) are not opened.
        if let Ok(id) = SnapshotId::from_hex(&name.to_ascii_lowercase()) {
            return match self.load_snapshot(id) {
                Ok(s) if in_env(&s) => Ok((id, s)),
                Ok(_) | Err(Error::Backend(crate::backend::BackendError::NotFound { .. })) => {
                    Err(Error::NoSuchSnapshot(name.into()))
                }
                Err(e) => Err(e),
            };
        }
        let all = self.snapshots()?;
        if name == "latest" {
            return all
                .into_iter()
                .rev()
                .find(|(_, s)| in_env(s))
                .ok_or_else(|| Error::NoSuchSnapshot(env.map_or("latest".into(), |e| format!("latest in {e}"))));
        }
        let lower = name.to_ascii_lowercase();
        if lower.is_empty() || !lower.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::NoSuchSnapshot(name.into()));
        }
        let mut hits: Vec<_> = all
            .into_iter()
            .filter(|(id, s)| id.to_hex().starts_with(&lower) && in_env(s))
            .collect();
        match hits.len() {
            0 => Err(Error::NoSuchSnapshot(name.into())),
            1 => hits.pop().ok_or_else(|| Error::NoSuchSnapshot(name.into())),
            count => Err(Error::AmbiguousSnapshot {
                prefix: name.into(),
                count,
            }),
        }
    }

    /// Adds a passphrase (a new key slot for the same master key).
    ///
    /// # Errors
    /// As [`keys::create_slot`].
    pub fn add_key(&self, passphrase: &[u8], kdf: KdfParams, label: &str) -> Result<KeySlotId> {
        keys::create_slot(
            self.backend().as_ref(),
            &self.config().vault_id,
            &self.inner.master,
            passphrase,
            kdf,
            label,
            now_secs(),
        )
    }

    /// Lists key slots.
    ///
    /// # Errors
    /// Store or format errors.
    pub fn list_keys(&self) -> Result<Vec<KeySlotInfo>> {
        keys::slot_infos(self.backend().as_ref())
    }

    /// Removes a key slot given by id or unique prefix; refuses the slot in use and the last one.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when refused or not found.
    pub fn remove_key(&self, prefix: &str) -> Result<KeySlotId> {
        let slots = self.list_keys()?;
        let hits: Vec<_> = slots
            .iter()
            .filter(|s| s.id.to_hex().starts_with(&prefix.to_ascii_lowercase()))
            .collect();
        let slot = match hits.as_slice() {
            [one] => one.id,
            [] => return Err(Error::InvalidArgument(format!("no key slot matches {prefix:?}"))),
            _ => return Err(Error::InvalidArgument(format!("{prefix:?} matches several key slots"))),
        };
        if slot == self.current_slot() {
            return Err(Error::InvalidArgument(
                "refusing to remove the key slot this passphrase opened".into(),
            ));
        }
        if slots.len() <= 1 {
            return Err(Error::InvalidArgument("refusing to remove the last key slot".into()));
        }
        self.backend().delete(&layout::keyslot_key(&slot))?;
        Ok(slot)
    }
}

/// `AMBER_TEST_COMMIT_PAUSE_MS`: milliseconds to wait between storing a snapshot's blobs
/// and committing it, so that tests can make an ingest overlap compactions (a slow
/// sidecar). Unset or not a number: no pause.
fn test_pause_before_commit() {
    let ms = std::env::var("AMBER_TEST_COMMIT_PAUSE_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(ms) = ms {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

/// How to open a vault ([`Repository::open_with`]).
#[derive(Clone, Copy, Default)]
pub struct OpenOptions<'a> {
    /// Writing (the default) or reading.
    pub mode: IndexMode,
    /// For writing: wait while another process holds the index, calling this once with a
    /// message for the user; `None` fails at once with [`Error::IndexBusy`].
    pub on_wait: Option<&'a (dyn Fn(&str) + Sync)>,
    /// Delete the local index (and its damage log) before opening, and do not bring it up
    /// to date: the caller rebuilds it ([`sync::rebuild_index`]). This works whatever state
    /// the cache is in, so a rebuild is always the way out of a broken cache.
    pub fresh_index: bool,
}

impl std::fmt::Debug for OpenOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenOptions")
            .field("mode", &self.mode)
            .field("waits", &self.on_wait.is_some())
            .field("fresh_index", &self.fresh_index)
            .finish()
    }
}

/// The snapshots of a vault ([`Repository::snapshot_list`]).
#[derive(Clone, Debug, Default)]
pub struct SnapshotList {
    /// Those that open, oldest first.
    pub snapshots: Vec<(SnapshotId, Snapshot)>,
    /// Those that do not, with why.
    pub damaged: Vec<(SnapshotId, String)>,
}

/// How often a writer waiting for the index tries again.
const INDEX_RETRY: std::time::Duration = std::time::Duration::from_millis(250);

fn open_index(dir: &Path, opts: &OpenOptions<'_>) -> Result<Index> {
    let mut told = false;
    loop {
        match Index::open_with(dir, opts.mode) {
            Err(Error::IndexBusy(path)) => {
                let Some(tell) = opts.on_wait else {
                    return Err(Error::IndexBusy(path));
                };
                if !told {
                    tell(&format!(
                        "waiting for another amber process (a snapshot, or `amber serve`) to finish writing to the \
                         index at {}",
                        path.display()
                    ));
                    told = true;
                }
                std::thread::sleep(INDEX_RETRY);
            }
            other => return other,
        }
    }
}

/// Whether a read error means the blob is damaged or missing (and not, say, a network
/// hiccup): its pack is gone or short, it failed to authenticate or decode, or the index
/// does not know it.
pub(crate) fn is_damage(e: &Error) -> bool {
    use crate::backend::BackendError;
    matches!(
        e,
        Error::Corrupt { .. }
            | Error::Crypto(_)
            | Error::MissingBlob(_)
            | Error::Backend(BackendError::NotFound { .. } | BackendError::OutOfRange { .. })
    )
}

fn corrupt_config(detail: String) -> Error {
    Error::Corrupt {
        kind: "config",
        id: CONFIG_KEY.into(),
        detail,
    }
}

fn in_pack(e: Error, kind: BlobKind, id: BlobId, pack: &crate::id::PackId) -> Error {
    match e {
        Error::Crypto(_) => Error::Corrupt {
            kind: kind.name(),
            id: id.to_hex(),
            detail: format!("authentication failed in pack {pack}: the pack was changed or damaged"),
        },
        Error::Corrupt { kind, id, detail } => Error::Corrupt {
            kind,
            id,
            detail: format!("{detail} (pack {pack})"),
        },
        other => other,
    }
}
