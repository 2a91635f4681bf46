//! Which data packs a snapshot needs: for tiering (a pack's age is that of the newest
//! snapshot needing it) and for restores from cold storage (which packs to warm up).
//!
//! Only metadata is read: tree nodes, chunk-list nodes and layer layouts, all in metadata
//! packs, which stay in the hot class.

use std::collections::{HashMap, HashSet};

use crate::error::Result;
use crate::format::pack::PackKind;
use crate::format::snapshot::{Snapshot, SourceKind};
use crate::format::tree::{Content, EntryKind};
use crate::id::{BlobId, PackId, SnapshotId, TreeId};
use crate::ops::content::for_each_chunk;
use crate::ops::environment::XATTR_SNAPSHOT;
use crate::ops::image::XATTR_LAYER_SNAPSHOT;
use crate::ops::tar::for_each_record;
use crate::ops::walk::walk;
use crate::repo::Repository;

/// What one snapshot refers to.
#[derive(Clone, Debug, Default)]
pub struct Reach {
    /// Data packs holding its content chunks.
    pub data_packs: HashSet<PackId>,
    /// Snapshots it is made of (an image's layers, an environment's parts).
    pub parts: Vec<SnapshotId>,
    /// Content chunks the index does not know (damaged or lost): not in any pack.
    pub unknown_chunks: u64,
}

/// The data packs snapshot `snap` needs itself, and the snapshots it is made of (their
/// packs are theirs: see [`data_packs_with_parts`]).
///
/// # Errors
/// Errors reading its metadata.
pub fn reach(repo: &Repository, snap: &Snapshot) -> Result<Reach> {
    let mut r = Reach::default();
    let root = TreeId::new(snap.root);
    match snap.source {
        SourceKind::TarLayer => {
            let node = repo.load_tree(root)?;
            for e in node.entries() {
                if e.name == b"layer.tar" {
                    layout_chunks(repo, &e.content, &mut r)?;
                } else {
                    chunks(repo, &e.content, &mut r)?;
                }
            }
        }
        _ => {
            walk(repo, root, b"", &mut |_, e| {
                let part = e
                    .xattrs
                    .iter()
                    .find(|(k, _)| k == XATTR_SNAPSHOT || k == XATTR_LAYER_SNAPSHOT)
                    .and_then(|(_, v)| std::str::from_utf8(v).ok())
                    .and_then(|hex| SnapshotId::from_hex(hex).ok());
                if let Some(id) = part {
                    r.parts.push(id);
                } else if e.kind == EntryKind::File {
                    chunks(repo, &e.content, &mut r)?;
                }
                Ok(())
            })?;
        }
    }
    Ok(r)
}

/// Notes the data packs of a file's content. (`walk` also descends into an image's layer
/// roots and an environment's part roots; what it finds there is counted under the part's
/// own snapshot as well, which only repeats work.)
fn chunks(repo: &Repository, content: &Content, r: &mut Reach) -> Result<()> {
    for_each_chunk(repo, content, &mut |c| {
        note_chunk(repo, BlobId::new(*c.id.hash()), r);
        Ok(())
    })
}

fn note_chunk(repo: &Repository, id: BlobId, r: &mut Reach) {
    match repo.index().lookup(&id) {
        Ok(Some(loc)) if loc.pack_kind == PackKind::Data => {
            r.data_packs.insert(loc.pack);
        }
        Ok(Some(_)) => {}
        // A hole (the all-zero block) or a lost chunk: nothing to keep warm.
        Ok(None) | Err(_) => r.unknown_chunks += 1,
    }
}

fn layout_chunks(repo: &Repository, layout: &Content, r: &mut Reach) -> Result<()> {
    use crate::format::layout::Record;
    for_each_record(repo, layout, &mut |rec| match rec {
        Record::Member { content, .. } | Record::Tail { content, .. } => chunks(repo, &content, r),
        _ => Ok(()),
    })
}

/// Every data pack snapshot `id` needs, its parts' included.
///
/// # Errors
/// Errors reading metadata.
pub fn data_packs_with_parts(repo: &Repository, id: SnapshotId) -> Result<HashSet<PackId>> {
    let mut seen = HashSet::new();
    let mut todo = vec![id];
    let mut packs = HashSet::new();
    while let Some(id) = todo.pop() {
        if !seen.insert(id) {
            continue;
        }
        let snap = repo.load_snapshot(id)?;
        let r = reach(repo, &snap)?;
        packs.extend(r.data_packs);
        todo.extend(r.parts);
    }
    Ok(packs)
}

/// For every data pack some snapshot needs: the time (ns since the epoch) of the newest
/// snapshot needing it. A part (a layer of an image, a part of an environment) counts as
/// being as new as the newest snapshot made of it.
///
/// # Errors
/// Errors reading metadata.
pub fn newest_use(repo: &Repository, snapshots: &[(SnapshotId, Snapshot)]) -> Result<HashMap<PackId, i64>> {
    let mut reaches: HashMap<SnapshotId, Reach> = HashMap::new();
    let mut time: HashMap<SnapshotId, i64> = HashMap::new();
    for (id, snap) in snapshots {
        reaches.insert(*id, reach(repo, snap)?);
        time.insert(*id, snap.time_ns);
    }
    // Parts take the time of what they are part of (an environment of an image of layers:
    // two rounds reach the layers).
    for _ in 0..3 {
        for (id, r) in &reaches {
            let t = time.get(id).copied().unwrap_or(i64::MIN);
            for part in &r.parts {
                if let Some(pt) = time.get_mut(part) {
                    *pt = (*pt).max(t);
                }
            }
        }
    }
    let mut newest: HashMap<PackId, i64> = HashMap::new();
    for (id, r) in &reaches {
        let t = time.get(id).copied().unwrap_or(i64::MIN);
        for pack in &r.data_packs {
            let e = newest.entry(*pack).or_insert(i64::MIN);
            *e = (*e).max(t);
        }
    }
    Ok(newest)
}
