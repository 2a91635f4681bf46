//! Building a volume snapshot from blocks pushed by index (a server receiving a volume over
//! the network), without reading any file: each block is inherited from the parent, named
//! by a chunk the vault holds, a hole, or sent as bytes.
//!
//! Also the wire digest: a keyed hash of a block's bytes that a pushing client can compute
//! with [`wire_digest_key`] to ask whether the vault holds a block, without learning the
//! vault's chunk ids. The index maps wire digests to chunk ids
//! ([`crate::repo::index::Index::wire_digest`]).

use crate::error::{Error, Result};
use crate::format::blob::BlobKind;
use crate::format::chunklist::{ListBuilder, ListNode};
use crate::format::snapshot::{Snapshot, SnapshotStats, SourceKind};
use crate::format::tree::{ChunkRef, Content, Entry, EntryKind, TreeNode};
use crate::id::{BlobId, ChunkId, Hash32, ListId, SnapshotId};
use crate::ops::Labels;
use crate::ops::block::volume_entry;
use crate::ops::content::ChunkCursor;
use crate::repo::Repository;
use crate::repo::writer::{BlobWriter, WriteStats};

/// BLAKE3 `derive_key` context of the wire digest key.
const WIRE_KEY_CONTEXT: &str = "amber v1 2025 wire digest key";
/// What the chunk id key hashes to seed the wire digest key.
const WIRE_KEY_SEED: &[u8] = b"amber v1 wire digest key seed";

/// The vault's wire digest key, for clients to hash blocks with ([`wire_digest`]).
///
/// Derived one-way from the vault's chunk id key (BLAKE3 `derive_key` over the keyed hash
/// of a fixed seed), so holding it reveals nothing about chunk ids or other keys.
pub fn wire_digest_key(repo: &Repository) -> [u8; 32] {
    let seed = repo.keys().ids.chunk.hash(WIRE_KEY_SEED);
    blake3::derive_key(WIRE_KEY_CONTEXT, seed.as_bytes())
}

/// The wire digest of a block's bytes under `key` (from [`wire_digest_key`]).
pub fn wire_digest(key: &[u8; 32], data: &[u8]) -> Hash32 {
    Hash32::from_bytes(*blake3::keyed_hash(key, data).as_bytes())
}

type NodeSink<'w> = Box<dyn FnMut(&ListNode) -> Result<ListId> + 'w>;

/// Counters of a volume build.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VolumeCounts {
    /// Blocks in the volume.
    pub blocks: u64,
    /// All-zero blocks, stored as holes.
    pub holes: u64,
    /// Blocks taken from the parent.
    pub inherited: u64,
    /// Blocks named by a chunk the vault already held.
    pub known: u64,
    /// Blocks whose bytes were sent (holes among them included).
    pub sent: u64,
    /// Bytes of the blocks sent.
    pub bytes_received: u64,
}

/// What [`VolumeBuilder::finish`] committed.
#[derive(Clone, Debug)]
pub struct BuiltVolume {
    /// The new snapshot.
    pub id: SnapshotId,
    /// Its object.
    pub snapshot: Snapshot,
    /// Volume size in bytes.
    pub size: u64,
    /// The volume entry's content: its block list.
    pub content: Content,
    /// Block counters.
    pub counts: VolumeCounts,
    /// What the writer stored so far (the whole push when the writer served only it).
    pub written: WriteStats,
}

/// Builds a volume's block list from blocks given strictly in index order.
pub struct VolumeBuilder<'w> {
    writer: &'w BlobWriter,
    size: u64,
    block: u64,
    count: u64,
    next: u64,
    parent: Option<(SnapshotId, ChunkCursor<'w>)>,
    list: ListBuilder<NodeSink<'w>>,
    wire_key: [u8; 32],
    counts: VolumeCounts,
}

impl<'w> VolumeBuilder<'w> {
    /// A builder for a volume of `size` bytes cut into the vault's block size.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the parent is not a volume or has another size;
    /// errors loading it.
    pub fn new(writer: &'w BlobWriter, size: u64, parent: Option<(SnapshotId, &Snapshot)>) -> Result<Self> {
        let repo = writer.repo();
        let block = u64::from(repo.config().block_size);
        let parent = match parent {
            Some((id, snap)) => Some((id, parent_cursor(repo, id, snap, size)?)),
            None => None,
        };
        let sink: NodeSink<'w> =
            Box::new(move |node: &ListNode| Ok(ListId::new(writer.store_meta(BlobKind::ChunkList, &node.encode())?)));
        Ok(VolumeBuilder {
            writer,
            size,
            block,
            count: size.div_ceil(block),
            next: 0,
            parent,
            list: ListBuilder::new(sink),
            wire_key: wire_digest_key(repo),
            counts: VolumeCounts::default(),
        })
    }

    /// Blocks in the volume.
    pub fn block_count(&self) -> u64 {
        self.count
    }

    /// The length of block `index`: the block size, or less for the last block.
    pub fn block_len(&self, index: u64) -> u64 {
        self.block
            .min(self.size.saturating_sub(index.saturating_mul(self.block)))
    }

    /// The index of the next block expected.
    pub fn next_block(&self) -> u64 {
        self.next
    }

    /// Takes block `index` from the parent.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when out of order or there is no parent;
    /// [`Error::Corrupt`] when the parent's list does not match its size.
    pub fn inherit(&mut self, index: u64) -> Result<ChunkId> {
        let len = self.next_len(index)?;
        if self.parent.is_none() {
            return Err(Error::InvalidArgument(format!(
                "block {index}: there is no parent to inherit from"
            )));
        }
        let id = self
            .advance(index, len)?
            .ok_or_else(|| Error::Pipeline("the parent's cursor vanished".into()))?
            .id;
        if !id.is_hole() && !self.writer.repo().index().holds_good(&BlobId::from(id))? {
            return Err(Error::InvalidArgument(format!(
                "block {index} of the parent volume is damaged or missing in the vault, so it cannot be \
                 inherited: push this volume without changed ranges, which sends such blocks whole"
            )));
        }
        self.counts.inherited += 1;
        self.push(index, id, len)
    }

    /// Block `index` is the chunk `id`, which the vault holds (or this writer stored).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when out of order, or the vault holds no chunk `id` of
    /// the block's length.
    pub fn known(&mut self, index: u64, id: ChunkId) -> Result<ChunkId> {
        let len = self.next_len(index)?;
        if !id.is_hole() {
            let stored = self.writer.stored_len(BlobKind::Chunk, &BlobId::from(id))?;
            if stored.map(u64::from) != Some(len) {
                return Err(Error::InvalidArgument(format!(
                    "block {index}: the vault holds no chunk {id} of {len} bytes; send the block's data"
                )));
            }
            self.counts.known += 1;
        }
        self.advance(index, len)?;
        self.push(index, id, len)
    }

    /// Block `index` is all zeros.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when out of order.
    pub fn hole(&mut self, index: u64) -> Result<ChunkId> {
        let len = self.next_len(index)?;
        self.advance(index, len)?;
        self.push(index, ChunkId::HOLE, len)
    }

    /// Block `index` has these bytes (exactly the block's length); all zeros become a
    /// hole. Stores the chunk, records its wire digest, and returns its id.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when out of order or of the wrong length; store errors.
    pub fn data(&mut self, index: u64, data: &[u8]) -> Result<ChunkId> {
        let len = self.next_len(index)?;
        if data.len() as u64 != len {
            return Err(Error::InvalidArgument(format!(
                "block {index} is {len} bytes, {} were sent",
                data.len()
            )));
        }
        let id = self.store_block(data)?;
        self.advance(index, len)?;
        self.counts.sent += 1;
        self.counts.bytes_received += len;
        self.push(index, id, len)
    }

    /// Block `index` is the parent's block with `pieces` (offset within the block, bytes)
    /// written over it: how a changed-range push sends only the bytes that changed.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when out of order, without a parent, or for a piece
    /// outside the block; errors reading the parent's block; store errors.
    pub fn patch(&mut self, index: u64, pieces: &[(u64, Vec<u8>)]) -> Result<ChunkId> {
        let len = self.next_len(index)?;
        if self.parent.is_none() {
            return Err(Error::InvalidArgument(format!(
                "block {index}: there is no parent to patch"
            )));
        }
        let fits = pieces
            .iter()
            .all(|(off, bytes)| off.checked_add(bytes.len() as u64).is_some_and(|end| end <= len));
        if !fits {
            return Err(Error::InvalidArgument(format!(
                "block {index}: a changed piece reaches past its end"
            )));
        }
        let base = self
            .advance(index, len)?
            .ok_or_else(|| Error::Pipeline("the parent's cursor vanished".into()))?;
        let mut data = if base.id.is_hole() {
            vec![0u8; usize::try_from(len).unwrap_or(0)]
        } else {
            self.writer.repo().read_chunk(base.id)?
        };
        for (off, bytes) in pieces {
            let at = usize::try_from(*off).unwrap_or(usize::MAX);
            if let Some(dst) = data.get_mut(at..at + bytes.len()) {
                dst.copy_from_slice(bytes);
            }
            self.counts.bytes_received += bytes.len() as u64;
        }
        let id = self.store_block(&data)?;
        self.counts.sent += 1;
        self.push(index, id, len)
    }

    /// Stores a block's bytes (all zeros: a hole) and records its wire digest.
    fn store_block(&self, data: &[u8]) -> Result<ChunkId> {
        if data.iter().all(|&b| b == 0) {
            return Ok(ChunkId::HOLE);
        }
        let repo = self.writer.repo();
        let id = repo.chunk_id(data);
        self.writer.store(BlobKind::Chunk, BlobId::from(id), data)?;
        repo.index().put_wire_digest(&wire_digest(&self.wire_key, data), id)?;
        Ok(id)
    }

    /// The length of block `index` when it is the next block expected.
    fn next_len(&self, index: u64) -> Result<u64> {
        if index != self.next || index >= self.count {
            return Err(Error::InvalidArgument(format!(
                "block {index} given where block {} of {} was expected",
                self.next, self.count
            )));
        }
        Ok(self.block_len(index))
    }

    /// Moves past block `index` of length `len`, stepping the parent's list along with it;
    /// returns the parent's chunk for it.
    fn advance(&mut self, index: u64, len: u64) -> Result<Option<ChunkRef>> {
        let previous = match self.parent.as_mut() {
            Some((id, cursor)) => {
                let c = cursor.next_chunk()?.filter(|c| u64::from(c.len) == len);
                Some(c.ok_or_else(|| Error::Corrupt {
                    kind: "volume",
                    id: id.to_hex(),
                    detail: format!("its block list does not match its size at block {index}"),
                })?)
            }
            None => None,
        };
        self.next += 1;
        Ok(previous)
    }

    fn push(&mut self, index: u64, id: ChunkId, len: u64) -> Result<ChunkId> {
        let len = u32::try_from(len).map_err(|_| Error::InvalidArgument(format!("block {index} over 4 GiB")))?;
        self.counts.blocks += 1;
        self.counts.holes += u64::from(id.is_hole());
        self.list.push(ChunkRef { id, len })?;
        Ok(id)
    }

    /// Ends the list, stores the volume's one-entry root node, flushes the writer (so
    /// every block is durable and indexed) and commits the snapshot.
    ///
    /// `entry` describes the volume (name, mode, owner, times); its kind becomes a file,
    /// its size the volume's, its content the block list.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when blocks are missing or the name or labels are not
    /// valid; store errors. Nothing is committed then.
    pub fn finish(self, labels: &Labels, mut entry: Entry, source_path: String) -> Result<BuiltVolume> {
        if self.next != self.count {
            return Err(Error::InvalidArgument(format!(
                "the volume has {} blocks, {} were given",
                self.count, self.next
            )));
        }
        labels.check()?;
        let (writer, size, counts) = (self.writer, self.size, self.counts);
        let parent = self.parent.as_ref().map(|(id, _)| *id);
        let content = self.list.finish()?;
        entry.kind = EntryKind::File;
        entry.size = size;
        entry.content = content.clone();
        let node = TreeNode::new(vec![entry]).map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let root = writer.store_meta(BlobKind::Tree, &node.encode())?;
        writer.flush()?;
        let written = writer.stats();
        let stats = SnapshotStats {
            files: 1,
            dirs: 0,
            bytes: size,
            bytes_new: written.bytes_new,
            blobs_new: written.blobs_new,
        };
        let snapshot = labels.snapshot(SourceKind::BlockVolume, root, parent, source_path, stats);
        let id = writer.repo().commit_snapshot(&snapshot)?;
        Ok(BuiltVolume {
            id,
            snapshot,
            size,
            content,
            counts,
            written,
        })
    }
}

impl std::fmt::Debug for VolumeBuilder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VolumeBuilder")
            .field("size", &self.size)
            .field("next", &self.next)
            .field("count", &self.count)
            .field("parent", &self.parent.as_ref().map(|(id, _)| id))
            .field("counts", &self.counts)
            .finish_non_exhaustive()
    }
}

/// A cursor over the parent's block list, after checking it is a volume of `size` bytes.
fn parent_cursor<'r>(repo: &'r Repository, id: SnapshotId, snap: &Snapshot, size: u64) -> Result<ChunkCursor<'r>> {
    let entry = volume_entry(repo, id, snap)?;
    if entry.size != size {
        return Err(Error::InvalidArgument(format!(
            "the volume is {size} bytes but its parent {id} is {} bytes: a volume's size must not change between snapshots",
            entry.size
        )));
    }
    Ok(ChunkCursor::new(repo, &entry.content))
}
