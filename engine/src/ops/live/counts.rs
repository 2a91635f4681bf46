//! The live set from reference counts kept in the index (`format-spec/compact.md`,
//! "Reference counts"): a run walks only the metadata of snapshots that came or went
//! since the last run, instead of every snapshot's.
//!
//! A node's count is the number of counted snapshots and counted nodes that name it. When
//! a count rises from 0 the node's children are counted in turn; when it falls to 0 they
//! are uncounted. A node that cannot be read below a damage mark is counted without its
//! children and remembered as unread; once it reads again (its blob was stored again) its
//! children are counted. A count that disagrees with the metadata (a node to uncount that
//! has no count, or no longer reads) makes the run count everything again from nothing.

use std::collections::{BTreeMap, HashSet};

use super::LiveSet;
use crate::error::{Error, Result};
use crate::format::layout::Record;
use crate::format::snapshot::{Snapshot, SourceKind};
use crate::format::tree::Content;
use crate::id::{ChunkId, ListId, SnapshotId, TreeId};
use crate::ops::tar::for_each_record;
use crate::repo::Repository;
use crate::repo::index::{Node, RefBatch, RefsGuard};

/// The blobs the store's snapshots use, from the index's counts brought up to date; `None`
/// when the index cannot keep counts (the caller walks every snapshot instead).
/// `progress(done, total)` follows the snapshots whose metadata is walked.
///
/// # Errors
/// A new snapshot whose metadata cannot be read (what it uses is unknown); store and
/// index errors.
pub fn counted_live(repo: &Repository, progress: &dyn Fn(u64, u64)) -> Result<Option<LiveSet>> {
    let Some(refs) = repo.index().refs()? else {
        return Ok(None);
    };
    let listed = repo.snapshot_ids()?;
    if let Some(live) = bring_up_to_date(repo, &refs, &listed, progress)? {
        return Ok(Some(live));
    }
    refs.clear()?;
    bring_up_to_date(repo, &refs, &listed, progress)?
        .map(Some)
        .ok_or_else(|| Error::Pipeline("reference counts disagree with the metadata even when made anew".into()))
}

/// `None` when the counts disagree with the metadata.
fn bring_up_to_date(
    repo: &Repository,
    refs: &RefsGuard<'_>,
    listed: &[SnapshotId],
    progress: &dyn Fn(u64, u64),
) -> Result<Option<LiveSet>> {
    let counted = refs.counted()?;
    let listed_set: HashSet<SnapshotId> = listed.iter().copied().collect();
    let new: Vec<SnapshotId> = listed.iter().filter(|id| !counted.contains_key(id)).copied().collect();
    let gone: Vec<(SnapshotId, Node)> = counted
        .iter()
        .filter(|(id, _)| !listed_set.contains(id))
        .map(|(id, root)| (*id, *root))
        .collect();
    let total = (new.len() + gone.len()) as u64;
    let mut nodes_read = 0;
    let mut done = 0;
    progress(0, total);
    // New ones first: a node a new snapshot shares with a gone one then never drops to 0.
    for id in &new {
        nodes_read += count_snapshot(repo, refs, *id)?;
        done += 1;
        progress(done, total);
    }
    for (id, root) in &gone {
        let mut c = Counter::new(repo, refs);
        if !c.remove(*root)? {
            return Ok(None);
        }
        c.batch.uncounted.push(*id);
        nodes_read += c.finish()?;
        done += 1;
        progress(done, total);
    }
    nodes_read += heal_unread(repo, refs)?;
    Ok(Some(LiveSet {
        blobs: refs.live()?,
        marked: HashSet::new(),
        snapshots: listed.len() as u64,
        walked: total,
        nodes_read,
    }))
}

fn count_snapshot(repo: &Repository, refs: &RefsGuard<'_>, id: SnapshotId) -> Result<u64> {
    let snap = repo.load_snapshot(id).map_err(|e| match e {
        Error::Corrupt { .. } | Error::Crypto(_) | Error::Format(_) => super::unknown_use(id, &e),
        other => other,
    })?;
    let root = root_node(&snap);
    let mut c = Counter::new(repo, refs);
    c.add(root, false).map_err(|e| super::unknown_use(id, &e))?;
    c.batch.counted.push((id, root));
    c.finish()
}

/// Counts the children of unread nodes that read now.
fn heal_unread(repo: &Repository, refs: &RefsGuard<'_>) -> Result<u64> {
    let mut read = 0;
    for node in refs.unread()? {
        let mut c = Counter::new(repo, refs);
        c.heal(node)?;
        read += c.finish()?;
    }
    Ok(read)
}

/// The node a snapshot names.
pub fn root_node(snap: &Snapshot) -> Node {
    let root = TreeId::new(snap.root);
    if snap.source == SourceKind::TarLayer {
        Node::Layer(root)
    } else {
        Node::Tree(root)
    }
}

/// One snapshot's changes, gathered before they are written at once.
struct Counter<'a, 'g> {
    repo: &'a Repository,
    refs: &'a RefsGuard<'g>,
    batch: RefBatch,
    nodes_read: u64,
}

impl<'a, 'g> Counter<'a, 'g> {
    fn new(repo: &'a Repository, refs: &'a RefsGuard<'g>) -> Self {
        Counter {
            repo,
            refs,
            batch: RefBatch::default(),
            nodes_read: 0,
        }
    }

    /// Writes the changes; returns the nodes read.
    fn finish(self) -> Result<u64> {
        self.refs.apply(&self.batch)?;
        Ok(self.nodes_read)
    }

    fn count(&self, node: Node) -> Result<u32> {
        match self.batch.counts.get(&node) {
            Some(&n) => Ok(n),
            None => self.refs.count(node),
        }
    }

    fn is_unread(&self, node: Node) -> Result<bool> {
        match self.batch.unread.get(&node) {
            Some(&unread) => Ok(unread),
            None => self.refs.is_unread(node),
        }
    }

    /// One more reference to `root`; `lenient` below a damage mark.
    fn add(&mut self, root: Node, lenient: bool) -> Result<()> {
        let mut stack = vec![(root, lenient)];
        while let Some((node, lenient)) = stack.pop() {
            let n = self.count(node)?;
            let more = n
                .checked_add(1)
                .ok_or_else(|| Error::Pipeline(format!("reference count of {node:?} overflows")))?;
            self.batch.counts.insert(node, more);
            if n > 0 {
                continue;
            }
            match self.children(node) {
                Ok(kids) => stack.extend(kids.into_iter().map(|(kid, marked)| (kid, marked || lenient))),
                Err(e) if lenient && crate::repo::is_damage(&e) => {
                    self.batch.unread.insert(node, true);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// One reference fewer to `root`; `false` when the counts disagree with the metadata.
    fn remove(&mut self, root: Node) -> Result<bool> {
        let mut stack = vec![root];
        while let Some(node) = stack.pop() {
            let n = self.count(node)?;
            let Some(less) = n.checked_sub(1) else { return Ok(false) };
            self.batch.counts.insert(node, less);
            if less > 0 {
                continue;
            }
            if self.is_unread(node)? {
                self.batch.unread.insert(node, false);
                continue;
            }
            match self.children(node) {
                Ok(kids) => stack.extend(kids.into_keys()),
                Err(e) if crate::repo::is_damage(&e) => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Counts the children of an unread node if it reads now.
    fn heal(&mut self, node: Node) -> Result<()> {
        match self.children(node) {
            Ok(kids) => {
                self.batch.unread.insert(node, false);
                kids.into_keys().try_for_each(|kid| self.add(kid, true))
            }
            Err(e) if crate::repo::is_damage(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The nodes `node` names, each once, and whether only below a damage mark.
    fn children(&mut self, node: Node) -> Result<BTreeMap<Node, bool>> {
        let mut kids = BTreeMap::new();
        match node {
            Node::Chunk(_) => {}
            Node::Tree(tree) => {
                self.nodes_read += 1;
                for e in self.repo.load_tree(tree)?.entries() {
                    content_edges(&e.content, false, &mut kids);
                }
            }
            Node::List(list) => {
                self.nodes_read += 1;
                let node = self.repo.load_list(list)?;
                for e in &node.entries {
                    let kid = if node.level == 0 {
                        let chunk = ChunkId::new(e.id);
                        if chunk.is_hole() {
                            continue;
                        }
                        Node::Chunk(chunk)
                    } else {
                        Node::List(ListId::new(e.id))
                    };
                    kids.insert(kid, false);
                }
            }
            Node::Layer(root) => {
                self.nodes_read += 1;
                kids.insert(Node::Tree(root), false);
                let tree = self.repo.load_tree(root)?;
                for e in tree.entries().iter().filter(|e| e.name == b"layer.tar") {
                    for_each_record(self.repo, &e.content, &mut |rec| {
                        if let Record::Member { content, .. } | Record::Tail { content, .. } = rec {
                            content_edges(&content, false, &mut kids);
                        }
                        Ok(())
                    })?;
                }
            }
        }
        Ok(kids)
    }
}

/// The nodes `content` names; `marked` when below a damage mark.
fn content_edges(content: &Content, marked: bool, kids: &mut BTreeMap<Node, bool>) {
    let mut put = |node: Node| {
        let entry = kids.entry(node).or_insert(marked);
        *entry = *entry && marked;
    };
    match content {
        Content::None => {}
        Content::Tree(sub) => put(Node::Tree(*sub)),
        Content::Inline(chunks) => chunks
            .iter()
            .filter(|c| !c.id.is_hole())
            .for_each(|c| put(Node::Chunk(c.id))),
        Content::List { root, .. } => put(Node::List(*root)),
        Content::Damaged(inner) => content_edges(inner, true, kids),
    }
}
