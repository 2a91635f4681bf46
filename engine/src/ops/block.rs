//! Block volumes: raw images cut into fixed-size aligned blocks. All-zero blocks are holes
//! (the zero id, stored nowhere). With a list of changed byte ranges and a parent, only
//! those ranges are read and every other block is taken from the parent's chunk list,
//! which is followed node by node without reading any of the parent's data.
//!
//! A volume snapshot's root is a tree node with one file entry (the image's name) whose
//! content is the block list, so `ls`, `diff` and the tree reader apply unchanged.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::format::blob::BlobKind;
use crate::format::chunklist::{ListBuilder, ListNode};
use crate::format::snapshot::{Snapshot, SnapshotStats, SourceKind};
use crate::format::tree::{ChunkRef, Content, Entry, EntryKind, TreeNode};
use crate::id::{BlobId, ChunkId, Hash32, ListId, SnapshotId, TreeId};
use crate::ops::content::{ChunkCursor, Piece};
use crate::ops::fsmeta::{self, NameCache};
use crate::ops::progress::Progress;
use crate::ops::ranges::{BlockSet, ByteRange};
use crate::ops::{Labels, reading_pool, worker_pool};
use crate::repo::Repository;
use crate::repo::writer::{BlobWriter, WriteStats};

/// Blocks read, then hashed and sealed in parallel, per batch.
pub const BATCH_BLOCKS: usize = 32;

/// What to record with a volume snapshot.
#[derive(Clone, Debug, Default)]
pub struct BlockOptions {
    /// What the snapshot records about itself.
    pub labels: Labels,
    /// The previous snapshot of this volume.
    pub parent: Option<SnapshotId>,
    /// Only these byte ranges changed since the parent (requires `parent`).
    pub changed_ranges: Option<Vec<ByteRange>>,
    /// Worker threads (0: one per core).
    pub threads: usize,
    /// Live counters.
    pub progress: Option<Arc<Progress>>,
}

/// What a volume snapshot did.
#[derive(Clone, Debug)]
pub struct BlockSummary {
    /// The new snapshot.
    pub id: SnapshotId,
    /// Its object.
    pub snapshot: Snapshot,
    /// Volume size in bytes.
    pub size: u64,
    /// Blocks in the volume.
    pub blocks: u64,
    /// All-zero blocks, stored as holes.
    pub holes: u64,
    /// Blocks taken from the parent without reading.
    pub inherited: u64,
    /// Bytes read from the source.
    pub bytes_read: u64,
    /// What the store grew by.
    pub written: WriteStats,
}

struct Source {
    file: File,
    path: PathBuf,
    size: u64,
}

fn open_source(path: &Path) -> Result<(Source, std::fs::Metadata)> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    // Block devices report no length in their metadata: ask by seeking to the end.
    let size = file.seek(SeekFrom::End(0)).map_err(|e| Error::io(path, e))?;
    Ok((
        Source {
            file,
            path: path.to_path_buf(),
            size,
        },
        meta,
    ))
}

/// The single file entry at the root of a volume snapshot.
///
/// # Errors
/// [`Error::InvalidArgument`] when the snapshot is not a volume.
pub fn volume_entry(repo: &Repository, id: SnapshotId, snap: &Snapshot) -> Result<Entry> {
    if snap.source != SourceKind::BlockVolume {
        return Err(Error::InvalidArgument(format!(
            "snapshot {id} is a {} snapshot, not a block volume",
            snap.source.name()
        )));
    }
    let node = repo.load_tree(TreeId::new(snap.root))?;
    node.entries().first().cloned().ok_or_else(|| Error::Corrupt {
        kind: "tree",
        id: snap.root.to_hex(),
        detail: "volume snapshot without its volume entry".into(),
    })
}

/// Snapshots a raw image or block device.
///
/// # Errors
/// [`Error::InvalidArgument`] for changed ranges without a parent, ranges outside the
/// volume, or a parent of another size; I/O and store errors. Nothing is committed then.
pub fn snapshot_block(repo: &Repository, path: &Path, opts: &BlockOptions) -> Result<BlockSummary> {
    let (mut src, meta) = open_source(path)?;
    let block = u64::from(repo.config().block_size);
    let parent = match opts.parent {
        Some(id) => Some((id, volume_entry(repo, id, &repo.load_snapshot(id)?)?)),
        None => None,
    };
    if let Some((id, entry)) = &parent
        && entry.size != src.size
    {
        return Err(Error::InvalidArgument(format!(
            "{} is {} bytes but its parent {id} is {} bytes: a volume's size must not change between snapshots",
            path.display(),
            src.size,
            entry.size
        )));
    }
    let changed = match (&opts.changed_ranges, &parent) {
        (Some(_), None) => {
            return Err(Error::InvalidArgument(
                "--changed-ranges needs a parent snapshot".into(),
            ));
        }
        (Some(r), Some(_)) => Some(BlockSet::from_ranges(r, src.size, block)?),
        (None, _) => None,
    };
    let writer = BlobWriter::new(repo)?;
    let pool = worker_pool(opts.threads, "block")?;
    let progress = opts.progress.clone().unwrap_or_default();
    let mut scan = Scan {
        writer: &writer,
        src: &mut src,
        block,
        progress: &progress,
        counts: Counts::default(),
    };
    let parent_content = parent.as_ref().map(|(_, e)| e.content.clone());
    let content = pool.install(|| scan.run(changed.as_ref(), parent_content.as_ref()))?;
    let counts = scan.counts;
    let root = store_volume_root(&writer, &src, &meta, content)?;
    let written = writer.finish()?;
    commit_volume(repo, &src, opts, root, counts, written)
}

#[derive(Default, Clone, Copy)]
struct Counts {
    blocks: u64,
    holes: u64,
    inherited: u64,
    bytes_read: u64,
}

struct Scan<'a> {
    writer: &'a BlobWriter,
    src: &'a mut Source,
    block: u64,
    progress: &'a Progress,
    counts: Counts,
}

impl Scan<'_> {
    fn run(&mut self, changed: Option<&BlockSet>, parent: Option<&Content>) -> Result<Content> {
        let repo = self.writer.repo().clone();
        let mut cursor = parent.filter(|_| changed.is_some()).map(|c| ChunkCursor::new(&repo, c));
        let mut list = ListBuilder::new(|node: &ListNode| -> Result<ListId> {
            Ok(ListId::new(
                self.writer.store_meta(BlobKind::ChunkList, &node.encode())?,
            ))
        });
        let blocks = self.src.size.div_ceil(self.block);
        let mut index = 0u64;
        while index < blocks {
            let batch_end = (index + BATCH_BLOCKS as u64).min(blocks);
            let mut to_read = Vec::new();
            let mut refs: Vec<Option<ChunkRef>> = Vec::with_capacity(BATCH_BLOCKS);
            for i in index..batch_end {
                // A parent's block known damaged is read again from the source.
                let inherited = match cursor.as_mut() {
                    Some(c) => c
                        .next_chunk()?
                        .filter(|_| changed.is_some_and(|s| !s.contains(i)))
                        .filter(|r| r.id.is_hole() || repo.index().holds_good(&r.id.into()).unwrap_or(false)),
                    None => None,
                };
                if inherited.is_some() {
                    self.counts.inherited += 1;
                } else {
                    to_read.push((refs.len(), i));
                }
                refs.push(inherited);
            }
            for (slot, r) in self.read_and_store(&to_read)? {
                if let Some(cell) = refs.get_mut(slot) {
                    *cell = Some(r);
                }
            }
            for r in refs.into_iter().flatten() {
                self.counts.holes += u64::from(r.id.is_hole());
                list.push(r)?;
            }
            self.counts.blocks += batch_end - index;
            index = batch_end;
        }
        list.finish()
    }

    /// Reads the given blocks, then hashes, compresses and seals them in parallel.
    fn read_and_store(&mut self, wanted: &[(usize, u64)]) -> Result<Vec<(usize, ChunkRef)>> {
        let mut data = Vec::with_capacity(wanted.len());
        for &(slot, i) in wanted {
            let offset = i * self.block;
            let len = self.block.min(self.src.size - offset);
            let mut buf = vec![0u8; usize::try_from(len).unwrap_or(0)];
            self.src
                .file
                .read_exact_at(&mut buf, offset)
                .map_err(|e| Error::io(&self.src.path, e))?;
            self.counts.bytes_read += len;
            self.progress.add_bytes(len);
            data.push((slot, buf));
        }
        let writer = self.writer;
        data.into_par_iter()
            .map(|(slot, buf)| {
                let len = u32::try_from(buf.len()).map_err(|_| Error::InvalidArgument("block over 4 GiB".into()))?;
                if buf.iter().all(|&b| b == 0) {
                    return Ok((slot, ChunkRef { id: ChunkId::HOLE, len }));
                }
                let id = writer.repo().chunk_id(&buf);
                writer.store(BlobKind::Chunk, BlobId::from(id), &buf)?;
                Ok((slot, ChunkRef { id, len }))
            })
            .collect()
    }
}

/// Stores the one-entry tree node that roots a volume snapshot.
fn store_volume_root(writer: &BlobWriter, src: &Source, meta: &std::fs::Metadata, content: Content) -> Result<Hash32> {
    let name = src
        .path
        .file_name()
        .map_or_else(|| b"volume".to_vec(), |n| n.as_encoded_bytes().to_vec());
    let mut entry =
        fsmeta::entry_from(&name, &src.path, meta, &NameCache::default()).map_err(|e| Error::io(&src.path, e))?;
    entry.kind = EntryKind::File;
    entry.size = src.size;
    entry.content = content;
    writer.store_meta(BlobKind::Tree, &TreeNode::new(vec![entry])?.encode())
}

fn commit_volume(
    repo: &Repository,
    src: &Source,
    opts: &BlockOptions,
    root: Hash32,
    counts: Counts,
    written: WriteStats,
) -> Result<BlockSummary> {
    let stats = SnapshotStats {
        files: 1,
        dirs: 0,
        bytes: src.size,
        bytes_new: written.bytes_new,
        blobs_new: written.blobs_new,
    };
    let source_path = src.path.to_string_lossy().into_owned();
    let snapshot = opts
        .labels
        .snapshot(SourceKind::BlockVolume, root, opts.parent, source_path, stats);
    let id = repo.commit_snapshot(&snapshot)?;
    Ok(BlockSummary {
        id,
        snapshot,
        size: src.size,
        blocks: counts.blocks,
        holes: counts.holes,
        inherited: counts.inherited,
        bytes_read: counts.bytes_read,
        written,
    })
}

/// How to restore a volume.
#[derive(Clone, Debug, Default)]
pub struct BlockRestoreOptions {
    /// An older image whose matching blocks are used instead of the repository's.
    pub seed: Option<PathBuf>,
    /// Worker threads (0: one per core).
    pub threads: usize,
    /// Live counters.
    pub progress: Option<Arc<Progress>>,
}

/// What a volume restore did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlockRestoreReport {
    /// Volume size.
    pub size: u64,
    /// Blocks.
    pub blocks: u64,
    /// Holes (left unwritten on a fresh file).
    pub holes: u64,
    /// Blocks read from the repository.
    pub from_repo: u64,
    /// Blocks taken from the seed image.
    pub from_seed: u64,
    /// Bytes written to the output.
    pub bytes_written: u64,
    /// Bytes of a volume a repair marked damaged that are lost, left as zeros.
    pub lost_bytes: u64,
    /// Where they are: (offset, length), neighbours merged, the first
    /// [`MAX_LISTED_RANGES`].
    pub lost_ranges: Vec<(u64, u64)>,
}

/// Lost ranges a block restore lists.
pub const MAX_LISTED_RANGES: usize = 1000;

impl BlockRestoreReport {
    fn lost(&mut self, offset: u64, len: u64) {
        self.lost_bytes += len;
        let listed = self.lost_ranges.len();
        match self.lost_ranges.last_mut() {
            Some((at, n)) if *at + *n == offset => *n += len,
            _ if listed < MAX_LISTED_RANGES => self.lost_ranges.push((offset, len)),
            _ => {}
        }
    }
}

struct Output {
    file: File,
    path: PathBuf,
    /// The output is the seed itself: matching blocks need no write at all.
    in_place: bool,
    /// A fresh regular file: holes need no write.
    fresh: bool,
}

fn open_output(out: &Path, seed: Option<&Path>, size: u64) -> Result<Output> {
    let existing = std::fs::metadata(out).ok();
    let seed_meta = seed
        .map(|s| std::fs::metadata(s).map_err(|e| Error::io(s, e)))
        .transpose()?;
    let in_place = match (&existing, &seed_meta) {
        (Some(a), Some(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    };
    let is_device = existing.as_ref().is_some_and(|m| {
        use std::os::unix::fs::FileTypeExt;
        m.file_type().is_block_device()
    });
    let fresh = !in_place && !is_device;
    // A fresh image is written beside its name and renamed into place when complete, so a
    // failed restore never leaves a half-written image under the name asked for.
    let path = if fresh { partial_path(out) } else { out.to_path_buf() };
    let file = OpenOptions::new()
        .write(true)
        .read(true)
        .create(true)
        .truncate(fresh)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    if !is_device {
        file.set_len(size).map_err(|e| Error::io(&path, e))?;
    }
    Ok(Output {
        file,
        path,
        in_place,
        fresh,
    })
}

fn partial_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().map(std::ffi::OsStr::to_os_string).unwrap_or_default();
    name.push(".amber-partial");
    out.with_file_name(name)
}

/// Restores a volume snapshot to `out` (a file, created or replaced; or a block device),
/// verifying every block, leaving holes unwritten in a fresh file.
///
/// # Errors
/// I/O, corruption (naming the block's offset) and store errors.
pub fn restore_block(
    repo: &Repository,
    id: SnapshotId,
    out: &Path,
    opts: &BlockRestoreOptions,
) -> Result<BlockRestoreReport> {
    let snap = repo.load_snapshot(id)?;
    let entry = volume_entry(repo, id, &snap)?;
    let seed = match &opts.seed {
        Some(p) => Some(File::open(p).map_err(|e| Error::io(p, e))?),
        None => None,
    };
    let mut output = open_output(out, opts.seed.as_deref(), entry.size)?;
    let filled = fill_output(repo, &entry, seed.as_ref(), &mut output, opts).and_then(|report| {
        output.file.sync_all().map_err(|e| Error::io(&output.path, e))?;
        Ok(report)
    });
    match filled {
        Ok(report) if output.fresh => {
            std::fs::rename(&output.path, out).map_err(|e| Error::io(out, e))?;
            Ok(report)
        }
        Ok(report) => Ok(report),
        Err(e) => {
            if output.fresh {
                let _ = std::fs::remove_file(&output.path);
            }
            Err(e)
        }
    }
}

fn fill_output(
    repo: &Repository,
    entry: &Entry,
    seed: Option<&File>,
    output: &mut Output,
    opts: &BlockRestoreOptions,
) -> Result<BlockRestoreReport> {
    let pool = reading_pool(repo, opts.threads, "block")?;
    let progress = opts.progress.clone().unwrap_or_default();
    let mut report = BlockRestoreReport {
        size: entry.size,
        ..BlockRestoreReport::default()
    };
    // A volume a repair marked damaged is restored in part: what is lost stays zeros.
    let marked = entry.content.is_damaged();
    let mut cursor = if marked {
        ChunkCursor::tolerant(repo, &entry.content, entry.size)
    } else {
        ChunkCursor::new(repo, &entry.content)
    };
    let mut offset = 0u64;
    let mut more = true;
    while more {
        let mut batch = Vec::with_capacity(BATCH_BLOCKS);
        while batch.len() < BATCH_BLOCKS {
            match cursor.next_piece()? {
                Some(Piece::Chunk(c)) => {
                    batch.push((offset, c));
                    offset += u64::from(c.len);
                }
                Some(Piece::Lost(n)) => {
                    zero_lost(output, &mut report, offset, n)?;
                    offset += n;
                }
                None => {
                    more = false;
                    break;
                }
            }
        }
        let blocks = pool.install(|| fetch_batch(repo, seed, &batch, marked))?;
        write_batch(output, blocks, &mut report, &progress)?;
    }
    if offset != entry.size {
        return Err(Error::Corrupt {
            kind: "volume",
            id: output.path.display().to_string(),
            detail: format!("blocks cover {offset} bytes, the volume is {}", entry.size),
        });
    }
    Ok(report)
}

/// Zeros for `len` lost bytes at `offset` (nothing to write in a fresh file).
fn zero_lost(out: &Output, report: &mut BlockRestoreReport, offset: u64, len: u64) -> Result<()> {
    report.lost(offset, len);
    if out.fresh {
        return Ok(());
    }
    let zeros = vec![0u8; 1 << 20];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(zeros.len() as u64);
        let piece = zeros.get(..n as usize).unwrap_or_default();
        out.file
            .write_all_at(piece, offset + done)
            .map_err(|e| Error::io(&out.path, e))?;
        done += n;
    }
    Ok(())
}

enum Fetched {
    Hole(u64, u32),
    /// A block of a volume marked damaged that cannot be read.
    Lost(u64, u32),
    Seed(u64, Vec<u8>),
    Repo(u64, Vec<u8>),
}

/// Reads a batch of blocks; with `marked` (a volume a repair marked damaged), a block that
/// is lost is [`Fetched::Lost`] rather than an error.
fn fetch_batch(
    repo: &Repository,
    seed: Option<&File>,
    batch: &[(u64, ChunkRef)],
    marked: bool,
) -> Result<Vec<Fetched>> {
    batch
        .par_iter()
        .map(|&(offset, c)| {
            if c.id.is_hole() {
                return Ok(Fetched::Hole(offset, c.len));
            }
            if let Some(data) = seed
                .and_then(|s| read_seed(s, offset, c.len))
                .filter(|d| repo.chunk_id(d) == c.id)
            {
                return Ok(Fetched::Seed(offset, data));
            }
            let read = repo.read_chunk(c.id);
            if marked && read.as_ref().is_err_and(crate::repo::is_damage) {
                return Ok(Fetched::Lost(offset, c.len));
            }
            let data = read.map_err(|e| Error::Corrupt {
                kind: "volume block",
                id: c.id.to_hex(),
                detail: format!("at byte {offset}: {e}"),
            })?;
            Ok(Fetched::Repo(offset, data))
        })
        .collect()
}

fn read_seed(seed: &File, offset: u64, len: u32) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; len as usize];
    seed.read_exact_at(&mut buf, offset).ok().map(|()| buf)
}

fn write_batch(
    out: &mut Output,
    blocks: Vec<Fetched>,
    report: &mut BlockRestoreReport,
    progress: &Progress,
) -> Result<()> {
    for b in blocks {
        report.blocks += 1;
        let (offset, data) = match b {
            Fetched::Hole(offset, len) => {
                report.holes += 1;
                progress.add_bytes(u64::from(len));
                if out.fresh {
                    continue;
                }
                (offset, vec![0u8; len as usize])
            }
            Fetched::Lost(offset, len) => {
                report.blocks -= 1;
                zero_lost(out, report, offset, u64::from(len))?;
                progress.add_bytes(u64::from(len));
                continue;
            }
            Fetched::Seed(offset, data) => {
                report.from_seed += 1;
                progress.add_bytes(data.len() as u64);
                if out.in_place {
                    continue;
                }
                (offset, data)
            }
            Fetched::Repo(offset, data) => {
                report.from_repo += 1;
                progress.add_bytes(data.len() as u64);
                (offset, data)
            }
        };
        out.file
            .write_all_at(&data, offset)
            .map_err(|e| Error::io(&out.path, e))?;
        report.bytes_written += data.len() as u64;
    }
    Ok(())
}
