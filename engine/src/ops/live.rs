//! Which blobs the vault's snapshots name: every tree node, chunk-list node, layout chunk
//! and content chunk reachable from a snapshot. What compaction keeps.
//!
//! Only metadata is read. A tree node or chunk list already visited (by this snapshot or
//! an earlier one) is not walked again, so the cost is one visit per distinct metadata
//! node plus one per snapshot: snapshots that share their unchanged subtrees cost only
//! what changed. Compaction keeps the answer as reference counts in the index and walks
//! only what came or went since its last run ([`counted_live`]).

mod counts;
#[cfg(test)]
mod counts_tests;

use std::collections::HashSet;

use crate::error::{Error, Result};
use crate::format::layout::Record;
use crate::format::snapshot::{Snapshot, SourceKind};
use crate::format::tree::Content;
use crate::id::{BlobId, ListId, SnapshotId, TreeId};
use crate::ops::tar::for_each_record;
use crate::repo::Repository;

pub use counts::{counted_live, root_node};

/// The blobs in use, and what it cost to find them.
#[derive(Debug, Default)]
pub struct LiveSet {
    /// Every blob a snapshot names.
    pub blobs: HashSet<BlobId>,
    /// Those of them named only below a damage mark (tree.md): lost ones are known lost.
    pub marked: HashSet<BlobId>,
    /// Snapshots whose blobs these are.
    pub snapshots: u64,
    /// Snapshots whose metadata was walked to find them: all of them, or (from counts)
    /// those that came or went since the counts were last brought up to date.
    pub walked: u64,
    /// Tree nodes and chunk-list nodes read (each distinct node once).
    pub nodes_read: u64,
}

#[derive(Default)]
struct Seen {
    trees: HashSet<TreeId>,
    lists: HashSet<ListId>,
    layers: HashSet<TreeId>,
}

/// Walks `snapshots` (all of the vault's, for compaction).
///
/// # Errors
/// Any metadata that cannot be read, naming the snapshot: what it names is then unknown,
/// and nothing may be deleted on the strength of this set.
pub fn live_blobs(repo: &Repository, snapshots: &[(SnapshotId, Snapshot)]) -> Result<LiveSet> {
    let mut live = LiveSet::default();
    let mut seen = Seen::default();
    for (id, snap) in snapshots {
        walk_snapshot(repo, snap, &mut live, &mut seen).map_err(|e| unknown_use(*id, &e))?;
        live.snapshots += 1;
    }
    live.walked = live.snapshots;
    Ok(live)
}

/// Snapshot `id` cannot be read far enough to tell which blobs it uses.
fn unknown_use(id: SnapshotId, e: &Error) -> Error {
    Error::Corrupt {
        kind: "snapshot",
        id: id.to_hex(),
        detail: format!("its metadata cannot be read, so what it uses is unknown: {e}"),
    }
}

fn walk_snapshot(repo: &Repository, snap: &Snapshot, live: &mut LiveSet, seen: &mut Seen) -> Result<()> {
    let root = TreeId::new(snap.root);
    if snap.source == SourceKind::TarLayer {
        walk_layer(repo, root, live, seen)
    } else {
        walk_tree(repo, root, live, seen)
    }
}

fn walk_tree(repo: &Repository, tree: TreeId, live: &mut LiveSet, seen: &mut Seen) -> Result<()> {
    if !seen.trees.insert(tree) {
        return Ok(());
    }
    live.blobs.insert(tree.into());
    live.nodes_read += 1;
    let node = repo.load_tree(tree)?;
    for e in node.entries() {
        match &e.content {
            Content::Tree(sub) => walk_tree(repo, *sub, live, seen)?,
            other => walk_content(repo, other, live, seen)?,
        }
    }
    Ok(())
}

/// A layer's root: as a tree (its entries' content, the layout chunks among them), then
/// the members its layout names.
fn walk_layer(repo: &Repository, root: TreeId, live: &mut LiveSet, seen: &mut Seen) -> Result<()> {
    if !seen.layers.insert(root) {
        return Ok(());
    }
    walk_tree(repo, root, live, seen)?;
    let node = repo.load_tree(root)?;
    for e in node.entries().iter().filter(|e| e.name == b"layer.tar") {
        for_each_record(repo, &e.content, &mut |rec| {
            if let Record::Member { content, .. } | Record::Tail { content, .. } = rec {
                walk_content(repo, &content, live, seen)?;
            }
            Ok(())
        })?;
    }
    Ok(())
}

fn walk_content(repo: &Repository, content: &Content, live: &mut LiveSet, seen: &mut Seen) -> Result<()> {
    match content {
        Content::None | Content::Tree(_) => Ok(()),
        Content::Damaged(inner) => walk_damaged(repo, inner, live, seen),
        Content::Inline(chunks) => {
            live.blobs
                .extend(chunks.iter().filter(|c| !c.id.is_hole()).map(|c| BlobId::from(c.id)));
            Ok(())
        }
        Content::List { root, .. } => walk_list(repo, *root, live, seen, false),
    }
}

/// Content a repair marked damaged: what of it can still be read is kept (a restore writes
/// it, and a blob stored again heals the rest); a node that cannot be read is skipped, and
/// the walk goes on past it.
fn walk_damaged(repo: &Repository, inner: &Content, live: &mut LiveSet, seen: &mut Seen) -> Result<()> {
    let before = std::mem::take(&mut live.blobs);
    let walked = walk_below_mark(repo, inner, live, seen);
    let below = std::mem::replace(&mut live.blobs, before);
    for blob in below {
        if !live.blobs.contains(&blob) {
            live.marked.insert(blob);
        }
        live.blobs.insert(blob);
    }
    walked
}

fn walk_below_mark(repo: &Repository, inner: &Content, live: &mut LiveSet, seen: &mut Seen) -> Result<()> {
    match inner {
        Content::Tree(sub) => match repo.load_tree(*sub) {
            Ok(_) => walk_tree(repo, *sub, live, seen),
            Err(e) if crate::repo::is_damage(&e) => {
                live.blobs.insert((*sub).into());
                Ok(())
            }
            Err(e) => Err(e),
        },
        Content::List { root, .. } => walk_list(repo, *root, live, seen, true),
        other => walk_content(repo, other, live, seen),
    }
}

/// A chunk list; `lenient` (below a damage mark): a node that cannot be read is skipped.
fn walk_list(repo: &Repository, list: ListId, live: &mut LiveSet, seen: &mut Seen, lenient: bool) -> Result<()> {
    if !seen.lists.insert(list) {
        return Ok(());
    }
    live.blobs.insert(list.into());
    live.nodes_read += 1;
    let node = match repo.load_list(list) {
        Ok(node) => node,
        Err(e) if lenient && crate::repo::is_damage(&e) => return Ok(()),
        Err(e) => return Err(e),
    };
    for e in &node.entries {
        if node.level == 0 {
            let id = crate::id::ChunkId::new(e.id);
            if !id.is_hole() {
                live.blobs.insert(id.into());
            }
        } else {
            walk_list(repo, ListId::new(e.id), live, seen, lenient)?;
        }
    }
    Ok(())
}
