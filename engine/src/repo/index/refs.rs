//! Reference counts of the vault's metadata graph, kept in the index so that compaction
//! learns which blobs are in use without walking every snapshot on every run
//! (`format-spec/compact.md`, "Reference counts"). Three column families:
//!
//! - `refs`: node (tag u8 ‖ id 32) → count u32 LE: how many counted snapshots and live
//!   nodes name it;
//! - `counted`: snapshot id 32 → its root node (tag ‖ id): the snapshots the counts
//!   reflect;
//! - `unread`: node → empty: counted while its content could not be read (below a damage
//!   mark), so its own children are not counted (yet).
//!
//! The counts always reflect exactly the snapshots in `counted`: every change of one
//! snapshot is one RocksDB write batch.

use std::collections::{HashMap, HashSet};
use std::sync::MutexGuard;

use rocksdb::WriteBatch;

use super::Index;
use crate::error::{Error, Result};
use crate::id::{BlobId, ChunkId, Hash32, ListId, SnapshotId, TreeId};

pub(super) const CF_REFS: &str = "refs";
pub(super) const CF_COUNTED: &str = "counted";
pub(super) const CF_UNREAD: &str = "unread";

/// A node of the metadata graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Node {
    /// A tree node.
    Tree(TreeId),
    /// A chunk-list node.
    List(ListId),
    /// A content or layout chunk (a leaf).
    Chunk(ChunkId),
    /// A layer's root as a layer: its tree plus the members its layout names.
    Layer(TreeId),
}

impl Node {
    const LEN: usize = 33;

    fn encode(self) -> [u8; Self::LEN] {
        let (tag, id) = match self {
            Node::Tree(t) => (1, *t.hash()),
            Node::List(l) => (2, *l.hash()),
            Node::Chunk(c) => (3, *c.hash()),
            Node::Layer(t) => (4, *t.hash()),
        };
        let mut out = [0u8; Self::LEN];
        out[0] = tag;
        out[1..].copy_from_slice(id.as_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let (&tag, id) = bytes.split_first()?;
        let id = Hash32::from_slice(id).ok()?;
        Some(match tag {
            1 => Node::Tree(TreeId::new(id)),
            2 => Node::List(ListId::new(id)),
            3 => Node::Chunk(ChunkId::new(id)),
            4 => Node::Layer(TreeId::new(id)),
            _ => return None,
        })
    }

    /// The stored blob this node is, if it is one (a layer is a view of a tree).
    pub fn blob(self) -> Option<BlobId> {
        match self {
            Node::Tree(t) => Some(t.into()),
            Node::List(l) => Some(l.into()),
            Node::Chunk(c) => Some(c.into()),
            Node::Layer(_) => None,
        }
    }
}

/// The changes that one snapshot's coming or going makes, written at once.
#[derive(Debug, Default)]
pub struct RefBatch {
    /// New counts (0 deletes the entry).
    pub counts: HashMap<Node, u32>,
    /// Nodes whose content could not be read: `true` adds, `false` removes.
    pub unread: HashMap<Node, bool>,
    /// Snapshots now counted, with their roots.
    pub counted: Vec<(SnapshotId, Node)>,
    /// Snapshots no longer counted.
    pub uncounted: Vec<SnapshotId>,
}

/// Exclusive use of the counts by one compaction of this process.
pub struct RefsGuard<'i> {
    index: &'i Index,
    _lock: MutexGuard<'i, ()>,
}

impl Index {
    /// The reference counts for this process's use, or `None` when the index cannot keep
    /// them (opened read-only, or in memory): the caller then walks every snapshot.
    ///
    /// # Errors
    /// [`Error::Pipeline`] when an earlier user panicked.
    pub fn refs(&self) -> Result<Option<RefsGuard<'_>>> {
        if self.overlay.is_some() {
            return Ok(None);
        }
        let lock = self
            .counting
            .lock()
            .map_err(|_| Error::Pipeline("reference counts poisoned".into()))?;
        Ok(Some(RefsGuard {
            index: self,
            _lock: lock,
        }))
    }
}

impl RefsGuard<'_> {
    fn bad(&self, what: &str) -> Error {
        Error::Index {
            path: self.index.path.clone(),
            message: format!("bad entry in {what}"),
        }
    }

    /// The count of `node` (0 when it has none).
    ///
    /// # Errors
    /// [`Error::Index`].
    pub fn count(&self, node: Node) -> Result<u32> {
        match self.index.get_raw(CF_REFS, &node.encode())? {
            None => Ok(0),
            Some(v) => v
                .as_slice()
                .try_into()
                .map(u32::from_le_bytes)
                .map_err(|_| self.bad(CF_REFS)),
        }
    }

    /// Whether `node` was counted without its content.
    ///
    /// # Errors
    /// [`Error::Index`].
    pub fn is_unread(&self, node: Node) -> Result<bool> {
        Ok(self.index.get_raw(CF_UNREAD, &node.encode())?.is_some())
    }

    /// Every node counted without its content.
    ///
    /// # Errors
    /// [`Error::Index`].
    pub fn unread(&self) -> Result<Vec<Node>> {
        self.scan(CF_UNREAD, |k, _| Node::decode(k))
    }

    /// The snapshots the counts reflect, with their roots.
    ///
    /// # Errors
    /// [`Error::Index`].
    pub fn counted(&self) -> Result<HashMap<SnapshotId, Node>> {
        let pairs = self.scan(CF_COUNTED, |k, v| {
            let id = SnapshotId::new(Hash32::from_slice(k).ok()?);
            Some((id, Node::decode(v)?))
        })?;
        Ok(pairs.into_iter().collect())
    }

    /// Every blob with a count: the blobs the counted snapshots use.
    ///
    /// # Errors
    /// [`Error::Index`].
    pub fn live(&self) -> Result<HashSet<BlobId>> {
        let nodes = self.scan(CF_REFS, |k, _| Node::decode(k))?;
        Ok(nodes.into_iter().filter_map(Node::blob).collect())
    }

    fn scan<T>(&self, cf: &'static str, decode: impl Fn(&[u8], &[u8]) -> Option<T>) -> Result<Vec<T>> {
        let db = self.index.db()?;
        let mut out = Vec::new();
        for item in db.iterator_cf(self.index.cf(cf)?, rocksdb::IteratorMode::Start) {
            let (k, v) = item.map_err(|e| self.index.err(&e))?;
            out.push(decode(&k, &v).ok_or_else(|| self.bad(cf))?);
        }
        Ok(out)
    }

    /// Writes `batch` atomically.
    ///
    /// # Errors
    /// [`Error::Index`].
    pub fn apply(&self, batch: &RefBatch) -> Result<()> {
        let index = self.index;
        let (refs, unread, counted) = (index.cf(CF_REFS)?, index.cf(CF_UNREAD)?, index.cf(CF_COUNTED)?);
        let mut wb = WriteBatch::default();
        for (node, &n) in &batch.counts {
            match n {
                0 => wb.delete_cf(refs, node.encode()),
                n => wb.put_cf(refs, node.encode(), n.to_le_bytes()),
            }
        }
        for (node, &add) in &batch.unread {
            if add {
                wb.put_cf(unread, node.encode(), []);
            } else {
                wb.delete_cf(unread, node.encode());
            }
        }
        for (id, root) in &batch.counted {
            wb.put_cf(counted, id.as_bytes(), root.encode());
        }
        for id in &batch.uncounted {
            wb.delete_cf(counted, id.as_bytes());
        }
        index.db()?.write(wb).map_err(|e| index.err(&e))
    }

    /// Forgets every count, in one batch (they are about to be made again).
    ///
    /// # Errors
    /// [`Error::Index`].
    pub fn clear(&self) -> Result<()> {
        let index = self.index;
        let db = index.db()?;
        let mut wb = WriteBatch::default();
        for name in [CF_REFS, CF_COUNTED, CF_UNREAD] {
            let cf = index.cf(name)?;
            for item in db.iterator_cf(cf, rocksdb::IteratorMode::Start) {
                let (k, _) = item.map_err(|e| index.err(&e))?;
                wb.delete_cf(cf, k);
            }
        }
        db.write(wb).map_err(|e| index.err(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_encode_as_the_spec_says() {
        let id = Hash32::from_bytes([7; 32]);
        let nodes = [
            (Node::Tree(TreeId::new(id)), 1),
            (Node::List(ListId::new(id)), 2),
            (Node::Chunk(ChunkId::new(id)), 3),
            (Node::Layer(TreeId::new(id)), 4),
        ];
        for (node, tag) in nodes {
            let bytes = node.encode();
            assert_eq!(bytes[0], tag);
            assert_eq!(&bytes[1..], &[7; 32]);
            assert_eq!(Node::decode(&bytes), Some(node));
        }
        assert_eq!(Node::decode(&[5; 33]), None);
        assert_eq!(Node::decode(&[1; 32]), None);
    }
}
