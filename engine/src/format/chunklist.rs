//! Chunk lists: the content of a large file or volume as a tree of nodes whose
//! boundaries are chosen by the ids they hold, so an edit rewrites only a few nodes.
//!
//! ```text
//! u8   version (1)
//! u8   level (0: entries are chunks; n: entries are level n-1 nodes)
//! u32  entry count
//! entry*: id (32 bytes), u64 length in bytes of content below it
//! ```
//! An entry ends a node when the first four bytes of its id, read as a little-endian
//! u32, are divisible by [`FANOUT`], or when the node holds [`MAX_NODE_ENTRIES`]; the
//! node is closed when the next entry arrives, so the last node of a list may end on a
//! boundary. A list of at most [`MAX_INLINE_CHUNKS`] chunks that never closed a node is
//! kept inline in the tree entry.

use crate::format::FormatError;
use crate::format::codec::{Reader, Writer};
use crate::format::tree::{ChunkRef, Content, MAX_INLINE_CHUNKS};
use crate::id::{ChunkId, Hash32, ListId};

const LIST_VERSION: u8 = 1;
/// Average entries per node.
pub const FANOUT: u32 = 64;
/// Hard cap on entries per node.
pub const MAX_NODE_ENTRIES: usize = 1024;
/// Highest level accepted when decoding (64^8 chunks is far beyond any volume).
pub const MAX_LEVEL: u8 = 8;
const ENTRY_LEN: usize = 40;

/// One entry: a chunk (level 0) or a child node (higher levels).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListEntry {
    /// Chunk id or child node id.
    pub id: Hash32,
    /// Bytes of content under this entry.
    pub len: u64,
}

/// One node of a chunk list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListNode {
    /// 0 for nodes of chunks.
    pub level: u8,
    /// Entries in content order.
    pub entries: Vec<ListEntry>,
}

impl ListNode {
    /// Deterministic encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(6 + self.entries.len() * ENTRY_LEN);
        w.u8(LIST_VERSION);
        w.u8(self.level);
        w.u32(u32::try_from(self.entries.len()).unwrap_or(u32::MAX));
        for e in &self.entries {
            w.id(&e.id);
            w.u64(e.len);
        }
        w.into_bytes()
    }

    /// Decodes a node.
    ///
    /// # Errors
    /// [`FormatError`] when malformed.
    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        let mut r = Reader::new(bytes);
        let v = r.u8("list version")?;
        if v != LIST_VERSION {
            return Err(FormatError::UnsupportedVersion {
                object: "chunk list node",
                version: u16::from(v),
                supported: u16::from(LIST_VERSION),
            });
        }
        let level = r.u8("list level")?;
        if level > MAX_LEVEL {
            return Err(FormatError::invalid("list level", format!("{level} above {MAX_LEVEL}")));
        }
        let n = r.count32("list entry count", ENTRY_LEN)?;
        if n == 0 || n > MAX_NODE_ENTRIES {
            return Err(FormatError::invalid("list entry count", format!("{n}")));
        }
        let mut entries = Vec::with_capacity(n);
        for _ in 0..n {
            entries.push(ListEntry {
                id: r.id("list entry id")?,
                len: r.u64("list entry length")?,
            });
        }
        r.finish()?;
        Ok(ListNode { level, entries })
    }

    /// Total content bytes under this node.
    pub fn total_len(&self) -> u64 {
        self.entries.iter().map(|e| e.len).sum()
    }
}

/// True when an entry with this id ends its node.
/// The all-zero id (a hole in a volume) never ends a node, so runs of holes pack densely.
pub fn is_boundary(id: &Hash32) -> bool {
    let b = id.as_bytes();
    let word = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    word.is_multiple_of(FANOUT) && *id != Hash32::default()
}

/// Streams chunk refs in and emits nodes bottom-up through `sink`, which stores a node
/// and returns its id. Memory stays at one open node per level.
pub struct ListBuilder<S> {
    levels: Vec<Vec<ListEntry>>,
    emitted: bool,
    sink: S,
}

impl<S, E> ListBuilder<S>
where
    S: FnMut(&ListNode) -> Result<ListId, E>,
{
    /// A builder that stores nodes through `sink`.
    pub fn new(sink: S) -> Self {
        ListBuilder {
            levels: vec![Vec::new()],
            emitted: false,
            sink,
        }
    }

    /// Appends the next chunk.
    ///
    /// # Errors
    /// Whatever `sink` returns.
    pub fn push(&mut self, chunk: ChunkRef) -> Result<(), E> {
        self.push_at(
            0,
            ListEntry {
                id: *chunk.id.hash(),
                len: u64::from(chunk.len),
            },
        )
    }

    /// Adds an entry at `level`. A node is closed lazily, when the entry after its
    /// boundary arrives, so a list that ends on a boundary stays open for `finish`.
    fn push_at(&mut self, level: usize, entry: ListEntry) -> Result<(), E> {
        while self.levels.len() <= level {
            self.levels.push(Vec::new());
        }
        let due = self
            .levels
            .get(level)
            .and_then(|open| open.last().map(|last| (last, open.len())));
        if due.is_some_and(|(last, len)| is_boundary(&last.id) || len >= MAX_NODE_ENTRIES) {
            self.close(level)?;
        }
        if let Some(open) = self.levels.get_mut(level) {
            open.push(entry);
        }
        Ok(())
    }

    fn close(&mut self, level: usize) -> Result<(), E> {
        let Some(open) = self.levels.get_mut(level) else {
            return Ok(());
        };
        if open.is_empty() {
            return Ok(());
        }
        let node = ListNode {
            level: u8::try_from(level).unwrap_or(u8::MAX),
            entries: std::mem::take(open),
        };
        let id = (self.sink)(&node)?;
        self.emitted = true;
        self.push_at(
            level + 1,
            ListEntry {
                id: *id.hash(),
                len: node.total_len(),
            },
        )
    }

    /// Ends the list: short lists come back inline, longer ones as the root of a tree.
    ///
    /// # Errors
    /// Whatever `sink` returns.
    pub fn finish(mut self) -> Result<Content, E> {
        let leaf_only = !self.emitted && self.levels.len() == 1;
        if leaf_only && self.levels.first().is_some_and(|l| l.len() <= MAX_INLINE_CHUNKS) {
            return Ok(inline(self.levels.pop().unwrap_or_default()));
        }
        // Close levels bottom-up until the top level holds a single entry: the root.
        let mut level = 0;
        while level < self.levels.len() {
            let is_top = level + 1 == self.levels.len();
            let open = self.levels.get(level).map_or(&[][..], Vec::as_slice);
            if let ([root], true, true) = (open, is_top, level > 0) {
                return Ok(Content::List {
                    root: ListId::new(root.id),
                    height: u8::try_from(level - 1).unwrap_or(u8::MAX),
                });
            }
            self.close(level)?;
            level += 1;
        }
        // Only an empty list reaches here, and it was returned inline above.
        Ok(Content::None)
    }
}

fn inline(leaves: Vec<ListEntry>) -> Content {
    if leaves.is_empty() {
        return Content::None;
    }
    Content::Inline(
        leaves
            .into_iter()
            .map(|e| ChunkRef {
                id: ChunkId::new(e.id),
                len: u32::try_from(e.len).unwrap_or(u32::MAX),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn ids(n: usize, salt: u8) -> Vec<ChunkRef> {
        (0..n)
            .map(|i| {
                let h = blake3::hash(&[&i.to_le_bytes()[..], &[salt]].concat());
                ChunkRef {
                    id: ChunkId::new(Hash32::from_bytes(*h.as_bytes())),
                    len: 1000,
                }
            })
            .collect()
    }

    fn build(chunks: &[ChunkRef], store: &mut HashMap<Hash32, ListNode>) -> Content {
        let mut b = ListBuilder::new(|node: &ListNode| -> Result<ListId, ()> {
            let id = Hash32::from_bytes(*blake3::hash(&node.encode()).as_bytes());
            store.insert(id, node.clone());
            Ok(ListId::new(id))
        });
        for c in chunks {
            b.push(*c).unwrap();
        }
        b.finish().unwrap()
    }

    fn flatten(content: &Content, store: &HashMap<Hash32, ListNode>) -> Vec<ChunkRef> {
        fn walk(id: &Hash32, level: u8, store: &HashMap<Hash32, ListNode>, out: &mut Vec<ChunkRef>) {
            let node = &store[id];
            assert_eq!(node.level, level);
            for e in &node.entries {
                if level == 0 {
                    out.push(ChunkRef {
                        id: ChunkId::new(e.id),
                        len: e.len as u32,
                    });
                } else {
                    walk(&e.id, level - 1, store, out);
                }
            }
        }
        match content {
            Content::None => vec![],
            Content::Inline(c) => c.clone(),
            Content::List { root, height } => {
                let mut out = vec![];
                walk(root.hash(), *height, store, &mut out);
                out
            }
            Content::Tree(_) | Content::Damaged(_) => panic!("not a list"),
        }
    }

    #[test]
    fn short_lists_are_inline() {
        let mut store = HashMap::new();
        assert_eq!(build(&[], &mut store), Content::None);
        let c = ids(3, 0);
        assert_eq!(build(&c, &mut store), Content::Inline(c.clone()));
    }

    #[test]
    fn lists_ending_on_a_boundary_stay_inline() {
        let boundary = (0u32..)
            .map(|i| ChunkRef {
                id: ChunkId::new(Hash32::from_bytes(*blake3::hash(&i.to_le_bytes()).as_bytes())),
                len: 1,
            })
            .find(|c| is_boundary(c.id.hash()))
            .unwrap();
        let mut store = HashMap::new();
        assert_eq!(build(&[boundary], &mut store), Content::Inline(vec![boundary]));
        assert!(store.is_empty());
    }

    #[test]
    fn long_lists_round_trip_for_many_lengths() {
        // Many salts, so some lists have no boundary before their last chunk.
        for salt in 0..40 {
            for n in [65, 100, 1024, 1025] {
                let mut store = HashMap::new();
                let c = ids(n, 100 + salt);
                let content = build(&c, &mut store);
                assert!(matches!(content, Content::List { .. }), "n = {n}");
                assert_eq!(flatten(&content, &store), c, "n = {n}, salt = {salt}");
            }
        }
        for n in [65, 100, 1000, 5000, 70_000] {
            let mut store = HashMap::new();
            let c = ids(n, 1);
            let content = build(&c, &mut store);
            assert!(matches!(content, Content::List { .. }), "n = {n}");
            assert_eq!(flatten(&content, &store), c, "n = {n}");
        }
    }

    #[test]
    fn one_change_rewrites_few_nodes() {
        let mut before = HashMap::new();
        let c = ids(100_000, 2);
        let root_a = build(&c, &mut before);
        let mut changed = c.clone();
        changed[50_000] = ids(1, 9)[0];
        let mut after = HashMap::new();
        let root_b = build(&changed, &mut after);
        assert_ne!(root_a, root_b);
        let new_nodes = after.keys().filter(|k| !before.contains_key(*k)).count();
        assert!(new_nodes <= 6, "{new_nodes} nodes rewritten");
    }

    #[test]
    fn ten_changed_blocks_of_a_100_gib_volume_rewrite_a_few_small_nodes() {
        // 100 GiB in 256 KiB blocks, a quarter of them data, the rest holes.
        let blocks = 100 * 4096;
        let data = ids(blocks / 4, 3);
        let volume: Vec<ChunkRef> = (0..blocks)
            .map(|i| {
                if i % 4 == 0 {
                    data[i / 4]
                } else {
                    ChunkRef {
                        id: ChunkId::HOLE,
                        len: 262_144,
                    }
                }
            })
            .collect();
        let mut before = HashMap::new();
        build(&volume, &mut before);
        let mut changed = volume.clone();
        for (k, fresh) in ids(10, 77).into_iter().enumerate() {
            changed[k * 40_000 + 1] = fresh;
        }
        let mut after = HashMap::new();
        build(&changed, &mut after);
        let new: Vec<&ListNode> = after
            .iter()
            .filter(|(k, _)| !before.contains_key(*k))
            .map(|(_, n)| n)
            .collect();
        let bytes: usize = new.iter().map(|n| n.encode().len()).sum();
        eprintln!("rewritten: {} nodes, {bytes} bytes", new.len());
        assert!(new.len() <= 40, "{} nodes rewritten", new.len());
        assert!(
            bytes < 1_000_000,
            "{bytes} bytes of nodes rewritten of {}",
            before.values().map(|n| n.encode().len()).sum::<usize>()
        );
    }

    #[test]
    fn node_round_trip_and_bad_input() {
        let node = ListNode {
            level: 1,
            entries: vec![ListEntry {
                id: Hash32::from_bytes([1; 32]),
                len: 9,
            }],
        };
        assert_eq!(ListNode::decode(&node.encode()).unwrap(), node);
        assert!(ListNode::decode(&[1, 0, 0, 0, 0, 0]).is_err(), "empty node");
        assert!(ListNode::decode(&[1, 0, 255, 255, 255, 255]).is_err(), "forged count");
        assert!(ListNode::decode(&[2]).is_err());
    }
}
