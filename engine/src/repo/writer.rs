//! The write pipeline: deduplicate, seal on the caller's (rayon) thread, then hand sealed
//! blobs through a bounded queue to one packer thread that writes packs, indexes them and,
//! at the end, writes an index segment.

use std::collections::HashSet;
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

/// Ids claimed by this writer and not yet indexed.
type Pending = Arc<Mutex<HashSet<BlobId>>>;

/// Stores blobs into packs. Drop without [`BlobWriter::finish`] abandons the blobs not yet
/// in a pack (a failed ingest adds as little as possible); packs already written stay and
/// are reused by the next attempt.
pub struct BlobWriter {
    repo: Repository,
    tx: Option<Sender<SealedBlob>>,
    abandon: Arc<AtomicBool>,
    packer: Option<JoinHandle<Result<Vec<PackRecord>>>>,
    pending: Pending,
    counters: Counters,
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
        let packer = std::thread::Builder::new()
            .name("amber-packer".into())
            .spawn(move || run_packer(&packer_repo, &rx, &packer_pending, &packer_abandon))
            .map_err(|e| Error::Pipeline(format!("cannot start the packer: {e}")))?;
        Ok(BlobWriter {
            repo: repo.clone(),
            tx: Some(tx),
            abandon,
            packer: Some(packer),
            pending,
            counters: Counters::default(),
        })
    }

    /// The repository written to.
    pub fn repo(&self) -> &Repository {
        &self.repo
    }

    /// Claims `id` for this writer unless it is stored or already claimed.
    fn claim(&self, id: BlobId) -> Result<bool> {
        let mut pending = self
            .pending
            .lock()
            .map_err(|_| Error::Pipeline("pending set poisoned".into()))?;
        if pending.contains(&id) || self.repo.index().contains(&id)? {
            return Ok(false);
        }
        pending.insert(id);
        Ok(true)
    }

    /// Stores a blob unless the vault already holds it; returns whether it was new.
    /// Compression and sealing run on the calling thread.
    ///
    /// # Errors
    /// [`Error::Pipeline`] when the packer has stopped (its own error comes from `finish`).
    pub fn store(&self, kind: BlobKind, id: BlobId, plaintext: &[u8]) -> Result<bool> {
        if !self.claim(id)? {
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
        let raw_len = u32::try_from(plaintext.len()).map_err(|_| Error::InvalidArgument("blob over 4 GiB".into()))?;
        let tx = self
            .tx
            .as_ref()
            .ok_or_else(|| Error::Pipeline("writer already finished".into()))?;
        tx.send(SealedBlob {
            id,
            kind,
            raw_len,
            sealed,
        })
        .map_err(|_| Error::Pipeline("the packer stopped; see the error that follows".into()))?;
        Ok(true)
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
            packs: 0,
        }
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
        Ok(WriteStats {
            packs: records.len() as u64,
            ..self.stats()
        })
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

fn run_packer(
    repo: &Repository,
    rx: &Receiver<SealedBlob>,
    pending: &Pending,
    abandon: &AtomicBool,
) -> Result<Vec<PackRecord>> {
    let cfg = repo.config();
    let mut data = OpenPack {
        blobs: Vec::new(),
        bytes: 0,
        target: cfg.data_pack_target as usize,
    };
    let mut meta = OpenPack {
        blobs: Vec::new(),
        bytes: 0,
        target: cfg.meta_pack_target as usize,
    };
    let mut records = Vec::new();
    for blob in rx {
        let kind = PackKind::for_blob(blob.kind);
        let open = if kind == PackKind::Data { &mut data } else { &mut meta };
        open.bytes += blob.sealed.len();
        open.blobs.push(blob);
        if open.bytes >= open.target {
            records.push(flush(repo, kind, open, pending)?);
        }
    }
    if abandon.load(Ordering::SeqCst) {
        return Ok(records);
    }
    for (kind, open) in [(PackKind::Data, &mut data), (PackKind::Meta, &mut meta)] {
        if !open.blobs.is_empty() {
            records.push(flush(repo, kind, open, pending)?);
        }
    }
    Ok(records)
}

/// Writes one pack durably, then indexes it, then releases its ids from the pending set.
fn flush(repo: &Repository, kind: PackKind, open: &mut OpenPack, pending: &Pending) -> Result<PackRecord> {
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
    let mut set = pending
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

fn write_segments(repo: &Repository, records: &[PackRecord]) -> Result<()> {
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
