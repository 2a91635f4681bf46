//! The write pipeline: deduplicate, seal on the caller's (rayon) thread, then hand sealed
//! blobs through a bounded queue to one packer thread that writes packs, indexes them and,
//! at the end or at each [`BlobWriter::flush`], writes an index segment.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, bounded};

use crate::backend::PutMode;
use crate::crypto::random_array;
use crate::error::{Error, Result};
use crate::format::blob::{self, BlobKind};
use crate::format::pack::{self, DIRECTORY_ID, PackKind, SealedBlob};
use crate::format::segment::{self, PackRecord};
use crate::hash::plain_hash;
use crate::id::{BlobId, SegmentId};
use crate::repo::Repository;
use crate::repo::layout::{pack_key, segment_key};

/// Sealed blobs queued for the packer; bounds memory at this many blobs in flight.
pub const PACKER_QUEUE: usize = 32;

/// Totals of what a writer stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Blobs written.
    pub blobs_new: u64,
    /// Plaintext bytes of new blobs.
    pub raw_new: u64,
    /// Sealed bytes of new blobs (what the store grew by, before pack overhead).
    pub bytes_new: u64,
    /// Packs written.
    pub packs: u64,
}

#[derive(Default)]
struct Counters {
    blobs_new: AtomicU64,
    raw_new: AtomicU64,
    bytes_new: AtomicU64,
}

/// The packer's first error as text (the error itself is returned by `finish`).
type Failure = Arc<Mutex<Option<String>>>;

/// Ids claimed by this writer and not yet indexed, with their kind and plaintext length.
type Pending = Arc<Mutex<HashMap<BlobId, (BlobKind, u32)>>>;

/// What the packer thread receives.
enum ToPacker {
    /// A sealed blob to pack.
    Blob(SealedBlob),
    /// Write the open packs and a segment, then answer.
    Flush(Sender<Result<()>>),
}

/// Stores blobs into packs. Drop without [`BlobWriter::finish`] abandons the blobs not yet
/// in a pack (a failed ingest adds as little as possible); packs already written stay and
/// are reused by the next attempt.
pub struct BlobWriter {
    repo: Repository,
    tx: Option<Sender<ToPacker>>,
    abandon: Arc<AtomicBool>,
    /// What stopped the packer, for the callers whose send then fails.
    failure: Failure,
    packer: Option<JoinHandle<Result<Vec<PackRecord>>>>,
    pending: Pending,
    counters: Counters,
    packs: Arc<AtomicU64>,
    /// When this writer started, for the index's busy packs.
    epoch: crate::repo::index::WriterEpoch,
}

impl BlobWriter {
    /// Starts the packer thread.
    ///
    /// # Errors
    /// [`Error::Pipeline`] when the thread cannot be spawned.
    pub fn new(repo: &Repository) -> Result<Self> {
        let (tx, rx) = bounded(PACKER_QUEUE);
        let pending: Pending = Arc::default();
        let packer_repo = repo.clone();
        let packer_pending = pending.clone();
        let abandon = Arc::new(AtomicBool::new(false));
        let packer_abandon = abandon.clone();
        let packs = Arc::new(AtomicU64::new(0));
        let packer_packs = packs.clone();
        let failure: Failure = Arc::default();
        let packer_failure = failure.clone();
        let packer = std::thread::Builder::new()
            .name("amber-packer".into())
            .spawn(move || {
                let shared = PackerShared {
                    repo: &packer_repo,
                    pending: &packer_pending,
                    packs: &packer_packs,
                };
                let result = run_packer(&shared, &rx, &packer_abandon);
                if let (Err(e), Ok(mut slot)) = (&result, packer_failure.lock()) {
                    slot.get_or_insert_with(|| e.to_string());
                }
                result
            })
            .map_err(|e| Error::Pipeline(format!("cannot start the packer: {e}")))?;
        let epoch = repo.index().writer_started();
        Ok(BlobWriter {
            repo: repo.clone(),
            tx: Some(tx),
            abandon,
            failure,
            packer: Some(packer),
            pending,
            counters: Counters::default(),
            packs,
            epoch,
        })
    }

    /// The repository written to.
    pub fn repo(&self) -> &Repository {
        &self.repo
    }

    /// Claims `id` for this writer unless it is stored or already claimed.
    fn claim(&self, id: BlobId, kind: BlobKind, raw_len: u32, copy: bool) -> Result<bool> {
        let mut pending = self
            .pending
            .lock()
            .map_err(|_| Error::Pipeline("pending set poisoned".into()))?;
        // A blob known damaged is stored again: the new pack's copy then replaces it.
        if pending.contains_key(&id) || (!copy && self.repo.index().holds_good(&id)?) {
            return Ok(false);
        }
        pending.insert(id, (kind, raw_len));
        Ok(true)
    }

    /// The plaintext length of blob `id` of `kind` when the vault holds it or this writer
    /// has stored it (even if not yet packed); `None` otherwise, or when it is of another kind.
    ///
    /// # Errors
    /// [`Error::Index`], or [`Error::Pipeline`] when the pending set is poisoned.
    pub fn stored_len(&self, kind: BlobKind, id: &BlobId) -> Result<Option<u32>> {
        let claimed = self
            .pending
            .lock()
            .map_err(|_| Error::Pipeline("pending set poisoned".into()))?
            .get(id)
            .copied();
        if let Some((k, len)) = claimed {
            return Ok((k == kind).then_some(len));
        }
        let loc = self.repo.index().reusable(id)?;
        Ok(loc.filter(|loc| loc.kind == kind).map(|loc| loc.raw_len))
    }

    /// Stores a blob unless the vault already holds it; returns whether it was new.
    /// Compression and sealing run on the calling thread.
    ///
    /// # Errors
    /// [`Error::Pipeline`] when the packer has stopped (its own error comes from `finish`).
    pub fn store(&self, kind: BlobKind, id: BlobId, plaintext: &[u8]) -> Result<bool> {
        self.store_as(kind, id, plaintext, false)
    }

    /// Stores a blob into this writer's packs even when the vault holds it elsewhere: a
    /// compaction's repack, or a copy out of a pack being condemned.
    ///
    /// # Errors
    /// As [`BlobWriter::store`].
    pub fn store_copy(&self, kind: BlobKind, id: BlobId, plaintext: &[u8]) -> Result<bool> {
        self.store_as(kind, id, plaintext, true)
    }

    fn store_as(&self, kind: BlobKind, id: BlobId, plaintext: &[u8], copy: bool) -> Result<bool> {
        let raw_len = u32::try_from(plaintext.len()).map_err(|_| Error::InvalidArgument("blob over 4 GiB".into()))?;
        if !self.claim(id, kind, raw_len, copy)? {
            return Ok(false);
        }
        let level = Some(i32::from(self.repo.config().zstd_level));
        let sealed = blob::seal_blob(&self.repo.keys().seal_key, kind, id.hash(), plaintext, level)?;
        self.counters.blobs_new.fetch_add(1, Ordering::Relaxed);
        self.counters
            .raw_new
            .fetch_add(plaintext.len() as u64, Ordering::Relaxed);
        self.counters
            .bytes_new
            .fetch_add(sealed.len() as u64, Ordering::Relaxed);
        let tx = self
            .tx
            .as_ref()
            .ok_or_else(|| Error::Pipeline("writer already finished".into()))?;
        tx.send(ToPacker::Blob(SealedBlob {
            id,
            kind,
            raw_len,
            sealed,
        }))
        .map_err(|_| self.stopped())?;
        Ok(true)
    }

    /// The error for a caller whose blob the packer can no longer take: the packer's own
    /// error, which stopped it (for example a full disk, naming the path).
    fn stopped(&self) -> Error {
        // The packer records its error before it drops the queue; wait for that.
        if let Some(h) = &self.packer {
            while !h.is_finished() {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        let why = self.failure.lock().ok().and_then(|f| f.clone());
        Error::Poisoned(why.unwrap_or_else(|| "the packer stopped".into()))
    }

    /// Stores a metadata node under its keyed hash and returns that hash.
    ///
    /// # Errors
    /// As [`BlobWriter::store`].
    pub fn store_meta(&self, kind: BlobKind, plaintext: &[u8]) -> Result<crate::id::Hash32> {
        let key = self
            .repo
            .id_key(kind)
            .ok_or_else(|| Error::InvalidArgument(format!("{} is not content-addressed", kind.name())))?;
        let id = key.hash(plaintext);
        self.store(kind, BlobId::new(id), plaintext)?;
        Ok(id)
    }

    /// What was stored so far.
    pub fn stats(&self) -> WriteStats {
        WriteStats {
            blobs_new: self.counters.blobs_new.load(Ordering::Relaxed),
            raw_new: self.counters.raw_new.load(Ordering::Relaxed),
            bytes_new: self.counters.bytes_new.load(Ordering::Relaxed),
            packs: self.packs.load(Ordering::Relaxed),
        }
    }

    /// Makes every blob whose [`BlobWriter::store`] returned before this call durable and
    /// indexed: the open packs are written and indexed and an index segment naming them
    /// is written. The writer stays usable; a long write can checkpoint with this, and
    /// what was flushed survives a later failure or drop.
    ///
    /// # Errors
    /// The packer's error (for example a full disk); the writer is poisoned after it and
    /// every later store, flush or finish fails.
    pub fn flush(&self) -> Result<()> {
        let stopped = || self.stopped();
        let tx = self
            .tx
            .as_ref()
            .ok_or_else(|| Error::Pipeline("writer already finished".into()))?;
        let (reply_tx, reply_rx) = bounded(1);
        tx.send(ToPacker::Flush(reply_tx)).map_err(|_| stopped())?;
        reply_rx.recv().map_err(|_| stopped())?
    }

    /// Flushes every pack, waits for the packer, and writes the index segment.
    /// After this returns, every blob stored is durable and indexed.
    ///
    /// # Errors
    /// The packer's error (for example a full disk), store errors.
    pub fn finish(mut self) -> Result<WriteStats> {
        drop(self.tx.take());
        let records = self.join_packer()?;
        write_segments(&self.repo, &records)?;
        Ok(self.stats())
    }

    fn join_packer(&mut self) -> Result<Vec<PackRecord>> {
        let handle = self
            .packer
            .take()
            .ok_or_else(|| Error::Pipeline("packer already joined".into()))?;
        handle
            .join()
            .map_err(|_| Error::Pipeline("the packer thread panicked".into()))?
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        self.repo.index().writer_ended(self.epoch);
        self.abandon.store(true, Ordering::SeqCst);
        drop(self.tx.take());
        if let Some(h) = self.packer.take() {
            let _ = h.join();
        }
    }
}

struct OpenPack {
    blobs: Vec<SealedBlob>,
    bytes: usize,
    target: usize,
}

impl OpenPack {
    fn new(target: u32) -> Self {
        OpenPack {
            blobs: Vec::new(),
            bytes: 0,
            target: target as usize,
        }
    }
}

/// What the packer thread shares with its writer.
struct PackerShared<'a> {
    repo: &'a Repository,
    pending: &'a Pending,
    packs: &'a AtomicU64,
}

/// The packer's state: the open data and metadata packs, and the packs written since
/// the last segment.
struct Packer<'a> {
    shared: &'a PackerShared<'a>,
    data: OpenPack,
    meta: OpenPack,
    records: Vec<PackRecord>,
}

impl Packer<'_> {
    fn add(&mut self, blob: SealedBlob) -> Result<()> {
        let kind = PackKind::for_blob(blob.kind);
        let open = if kind == PackKind::Data {
            &mut self.data
        } else {
            &mut self.meta
        };
        open.bytes += blob.sealed.len();
        open.blobs.push(blob);
        if open.bytes >= open.target {
            self.records.push(write_pack(self.shared, kind, open)?);
        }
        Ok(())
    }

    /// Writes both open packs, when not empty.
    fn close_open(&mut self) -> Result<()> {
        for (kind, open) in [(PackKind::Data, &mut self.data), (PackKind::Meta, &mut self.meta)] {
            if !open.blobs.is_empty() {
                self.records.push(write_pack(self.shared, kind, open)?);
            }
        }
        Ok(())
    }

    /// Writes the open packs and a segment for every pack since the last one.
    fn flush(&mut self) -> Result<()> {
        self.close_open()?;
        write_segments(self.shared.repo, &self.records)?;
        self.records.clear();
        Ok(())
    }
}

/// Packs blobs until the writer hangs up; returns the packs not yet in a segment.
fn run_packer(shared: &PackerShared<'_>, rx: &Receiver<ToPacker>, abandon: &AtomicBool) -> Result<Vec<PackRecord>> {
    let cfg = shared.repo.config();
    let mut packer = Packer {
        shared,
        data: OpenPack::new(cfg.data_pack_target),
        meta: OpenPack::new(cfg.meta_pack_target),
        records: Vec::new(),
    };
    for msg in rx {
        match msg {
            ToPacker::Blob(blob) => packer.add(blob)?,
            ToPacker::Flush(reply) => {
                if let Err(e) = packer.flush() {
                    let _ = reply.send(Err(e));
                    return Err(Error::Poisoned("an earlier flush failed".into()));
                }
                let _ = reply.send(Ok(()));
            }
        }
    }
    if abandon.load(Ordering::SeqCst) {
        return Ok(packer.records);
    }
    packer.close_open()?;
    Ok(packer.records)
}

/// Writes one pack durably, then indexes it, then releases its ids from the pending set.
fn write_pack(shared: &PackerShared<'_>, kind: PackKind, open: &mut OpenPack) -> Result<PackRecord> {
    let repo = shared.repo;
    let blobs = std::mem::take(&mut open.blobs);
    open.bytes = 0;
    let seed = u64::from_le_bytes(random_array()?);
    let built = pack::build_pack(&repo.keys().seal_key, kind, blobs, seed)?;
    repo.backend()
        .put(&pack_key(kind, &built.id), &built.bytes, PutMode::CreateOnly)?;
    let record = PackRecord {
        id: built.id,
        kind,
        len: built.bytes.len() as u64,
        entries: built.entries,
    };
    repo.index().add_pack(&record)?;
    repo.index().touch(record.id);
    shared.packs.fetch_add(1, Ordering::Relaxed);
    let mut set = shared
        .pending
        .lock()
        .map_err(|_| Error::Pipeline("pending set poisoned".into()))?;
    for e in &record.entries {
        set.remove(&e.id);
    }
    Ok(record)
}

/// Blob entries per index segment, keeping each segment's plaintext far below the
/// largest blob a reader accepts (45 bytes per entry: about 22 MiB).
const SEGMENT_MAX_ENTRIES: usize = 500_000;

pub(crate) fn write_segments(repo: &Repository, records: &[PackRecord]) -> Result<()> {
    let mut start = 0;
    while start < records.len() {
        let mut end = start;
        let mut entries = 0;
        while let Some(r) = records.get(end) {
            if end > start && entries + r.entries.len() > SEGMENT_MAX_ENTRIES {
                break;
            }
            entries += r.entries.len();
            end += 1;
        }
        write_segment(repo, records.get(start..end).unwrap_or_default())?;
        start = end;
    }
    Ok(())
}

fn write_segment(repo: &Repository, records: &[PackRecord]) -> Result<SegmentId> {
    let plain = segment::encode(records);
    let sealed = blob::seal_blob(
        &repo.keys().seal_key,
        BlobKind::IndexSegment,
        &DIRECTORY_ID,
        &plain,
        Some(3),
    )?;
    let bytes = segment::frame(&sealed);
    let id = SegmentId::new(plain_hash(&bytes));
    repo.backend().put(&segment_key(&id), &bytes, PutMode::CreateOnly)?;
    repo.index().add_segment(&id)?;
    Ok(id)
}
