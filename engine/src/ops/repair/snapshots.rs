//! `amber repair snapshots`: for each snapshot that needs data the vault has lost, a new
//! snapshot in which every entry short of data is marked damaged
//! ([`Content::Damaged`], tree.md content tag 4) instead of being dropped. The mark keeps
//! the original reference, so a blob stored again later (a new snapshot of the same
//! content) heals the entry: a restore then writes it whole. The originals are kept until
//! the admin forgets them.
//!
//! What is damaged is what the index says: the run starts with the structural check of
//! `amber verify` (which marks lost and damaged blobs in the index); blobs found damaged
//! by an earlier `--read-data` are marked already. A tree node that cannot be read makes
//! its directory a damaged, empty one; a file, volume or layer with any chunk (or
//! chunk-list node, or layout chunk) not whole is marked as a whole, its readable chunks
//! still named. Snapshots made of parts (images, environments) are written anew naming
//! the repaired parts. See `format-spec/snapshot.md` (Repaired snapshots) and
//! `format-spec/tree.md` (Damage marks).

use std::collections::{BTreeSet, HashMap};

use crate::error::{Error, Result};
use crate::format::blob::BlobKind;
use crate::format::snapshot::{Snapshot, SourceKind};
use crate::format::tree::{Content, Entry, TreeNode};
use crate::id::{BlobId, SnapshotId, TreeId};
use crate::ops::content::{Piece, for_each_piece};
use crate::ops::environment::XATTR_SNAPSHOT;
use crate::ops::image::XATTR_LAYER_SNAPSHOT;
use crate::ops::join_rel;
use crate::ops::reach::reach;
use crate::ops::tar::{LAYOUT_ENTRY, for_each_record};
use crate::ops::verify::{VerifyOptions, verify};
use crate::repo::writer::BlobWriter;
use crate::repo::{Repository, is_damage};

/// Metadata key of a repaired snapshot: the id of the snapshot it repairs.
pub const REPAIRED_FROM_KEY: &str = "amber.repaired-from";
/// Tag of a repaired snapshot.
pub const REPAIRED_TAG: &str = "repaired";
/// Paths listed per repaired snapshot; the counts go on.
pub const MAX_LISTED_PATHS: usize = 100;

/// What to repair.
#[derive(Clone, Debug, Default)]
pub struct RepairSnapshotsOptions {
    /// Only these snapshots (and the parts they are made of); empty: every snapshot the
    /// structural check finds short of data.
    pub snapshots: Vec<SnapshotId>,
    /// Only report; write nothing.
    pub dry_run: bool,
}

/// One snapshot repaired (or, dry, that would be).
#[derive(Clone, Debug, Default)]
pub struct Repaired {
    /// The snapshot as it was (kept).
    pub original: SnapshotId,
    /// The new snapshot; `None` in a dry run.
    pub repaired: Option<SnapshotId>,
    /// Source kind of both.
    pub kind: &'static str,
    /// Files (a volume image, a layer) marked damaged.
    pub files: u64,
    /// Directories whose node is lost, marked damaged (and empty).
    pub dirs: u64,
    /// Bytes of the marked files that cannot be read.
    pub lost_bytes: u64,
    /// Parts (of an image or environment) replaced by their repaired snapshots.
    pub parts: u64,
    /// The first [`MAX_LISTED_PATHS`] marked paths, with the bytes each lost (`None`: a
    /// directory whose entries are lost).
    pub paths: Vec<(Vec<u8>, Option<u64>)>,
}

/// What a repair did.
#[derive(Clone, Debug, Default)]
pub struct RepairSnapshotsReport {
    /// Only reported.
    pub dry_run: bool,
    /// Snapshots looked at.
    pub checked: u64,
    /// Those written anew.
    pub repaired: Vec<Repaired>,
    /// Those that needed no new snapshot: what they lack is back, or only their copy of a
    /// tree node was damaged and it was stored again.
    pub unchanged: Vec<SnapshotId>,
    /// Those that cannot be repaired (the snapshot object or its root node is lost), with
    /// why.
    pub unrepairable: Vec<(SnapshotId, String)>,
}

/// Repairs as the module says.
///
/// # Errors
/// Store and index errors (the check could not run, a write failed); damage is reported.
pub fn repair_snapshots(repo: &Repository, opts: &RepairSnapshotsOptions) -> Result<RepairSnapshotsReport> {
    let check = verify(repo, &VerifyOptions::default())?;
    let list = repo.snapshot_list()?;
    let all: HashMap<SnapshotId, &Snapshot> = list.snapshots.iter().map(|(id, s)| (*id, s)).collect();
    let mut report = RepairSnapshotsReport {
        dry_run: opts.dry_run,
        ..RepairSnapshotsReport::default()
    };
    let wanted = wanted(repo, opts, &check.damaged_snapshots, &all)?;
    for (id, why) in &list.damaged {
        if opts.snapshots.is_empty() || opts.snapshots.contains(id) {
            report
                .unrepairable
                .push((*id, format!("the snapshot object does not open: {why}")));
        }
    }
    // Parts first (layers, trees, volumes), then images, then environments, so that each
    // composite names its parts' repaired snapshots.
    let mut order: Vec<SnapshotId> = wanted.into_iter().collect();
    order.sort_by_key(|id| all.get(id).map_or(0, |s| composite_rank(s.source)));
    let mut parts: HashMap<SnapshotId, (SnapshotId, TreeId)> = earlier_repairs(&list.snapshots);
    let writer = BlobWriter::new(repo)?;
    for id in order {
        let Some(snap) = all.get(&id) else { continue };
        report.checked += 1;
        let mut mender = Mender {
            repo,
            writer: &writer,
            parts: &parts,
            dry_run: opts.dry_run,
            done: Repaired {
                original: id,
                kind: snap.source.name(),
                ..Repaired::default()
            },
        };
        let root = TreeId::new(snap.root);
        match mender.root(snap.source, root)? {
            Node::Same => report.unchanged.push(id),
            Node::Lost(why) => report
                .unrepairable
                .push((id, format!("its root directory is lost: {why}"))),
            Node::New(new_root) => {
                let mut done = mender.done;
                if !opts.dry_run {
                    writer.flush()?;
                    let new = repo.commit_snapshot(&repaired_record(id, snap, new_root))?;
                    done.repaired = Some(new);
                    parts.insert(id, (new, new_root));
                }
                report.repaired.push(done);
            }
        }
    }
    writer.finish()?;
    Ok(report)
}

/// The snapshots to look at: those asked for (or every one found short of data), with
/// the parts they are made of that are short of data too.
fn wanted(
    repo: &Repository,
    opts: &RepairSnapshotsOptions,
    damaged: &[SnapshotId],
    all: &HashMap<SnapshotId, &Snapshot>,
) -> Result<BTreeSet<SnapshotId>> {
    if opts.snapshots.is_empty() {
        return Ok(damaged.iter().copied().collect());
    }
    let damaged: BTreeSet<SnapshotId> = damaged.iter().copied().collect();
    let mut out = BTreeSet::new();
    let mut todo = opts.snapshots.clone();
    while let Some(id) = todo.pop() {
        let Some(snap) = all.get(&id) else {
            return Err(Error::NoSuchSnapshot(id.to_hex()));
        };
        if out.insert(id) {
            todo.extend(reach(repo, snap)?.parts.into_iter().filter(|p| damaged.contains(p)));
        }
    }
    Ok(out)
}

/// Snapshots repaired by earlier runs: original → (repaired snapshot, its root), the
/// newest repair of each.
fn earlier_repairs(snapshots: &[(SnapshotId, Snapshot)]) -> HashMap<SnapshotId, (SnapshotId, TreeId)> {
    let mut out = HashMap::new();
    for (id, snap) in snapshots {
        let from = snap.metadata.iter().find(|(k, _)| k == REPAIRED_FROM_KEY);
        if let Some(original) = from.and_then(|(_, v)| SnapshotId::from_hex(v).ok()) {
            out.insert(original, (*id, TreeId::new(snap.root)));
        }
    }
    out
}

fn composite_rank(kind: SourceKind) -> u8 {
    match kind {
        SourceKind::Image => 1,
        SourceKind::Environment => 2,
        _ => 0,
    }
}

/// The repaired snapshot's record: the original's, with the new root, a time one
/// nanosecond later (so that it sorts after the original, and a retention policy that
/// keeps one of the two keeps it), the original as parent, and the repair noted.
fn repaired_record(original: SnapshotId, snap: &Snapshot, root: TreeId) -> Snapshot {
    let mut new = snap.clone();
    new.root = *root.hash();
    new.parent = Some(original);
    new.time_ns = snap.time_ns.saturating_add(1);
    if !new.tags.iter().any(|t| t == REPAIRED_TAG) {
        new.tags.push(REPAIRED_TAG.into());
        new.tags.sort();
    }
    new.metadata.retain(|(k, _)| k != REPAIRED_FROM_KEY);
    new.metadata.push((REPAIRED_FROM_KEY.into(), original.to_hex()));
    new.metadata.sort();
    new.stats.bytes_new = 0;
    new.stats.blobs_new = 0;
    if let Some(entry) = new.root_entry.as_mut() {
        entry.content = Content::Tree(root);
    }
    new
}

/// What became of a tree node.
enum Node {
    /// Nothing below it is short of data.
    Same,
    /// Written anew with marks (or new parts).
    New(TreeId),
    /// It cannot be read.
    Lost(String),
}

/// Rewrites one snapshot's trees, counting what it marks.
struct Mender<'a> {
    repo: &'a Repository,
    writer: &'a BlobWriter,
    /// Repaired parts: original → (repaired snapshot, its root).
    parts: &'a HashMap<SnapshotId, (SnapshotId, TreeId)>,
    /// Compute the new nodes' ids, store nothing.
    dry_run: bool,
    done: Repaired,
}

impl Mender<'_> {
    fn root(&mut self, kind: SourceKind, root: TreeId) -> Result<Node> {
        self.tree(root, b"", kind == SourceKind::TarLayer)
    }

    /// A tree node and everything below it; in a layer's root (`layer`), its layout is
    /// marked damaged when any of the layer is short of data.
    fn tree(&mut self, id: TreeId, path: &[u8], layer: bool) -> Result<Node> {
        let node = match self.repo.load_tree(id) {
            Ok(node) => node,
            Err(e) if is_damage(&e) => return Ok(Node::Lost(e.to_string())),
            Err(e) => return Err(e),
        };
        let mut changed = false;
        let mut entries = Vec::with_capacity(node.entries().len());
        for e in node.entries() {
            let new = if layer && e.name == LAYOUT_ENTRY {
                self.layout(e)?
            } else {
                self.entry(e, &join_rel(path, &e.name))?
            };
            changed |= new.is_some();
            entries.push(new.unwrap_or_else(|| e.clone()));
        }
        self.store(id, &node, changed.then_some(entries))
    }

    /// The node as it was (stored again if only its stored copy was damaged), or anew.
    fn store(&mut self, id: TreeId, node: &TreeNode, entries: Option<Vec<Entry>>) -> Result<Node> {
        let Some(entries) = entries else {
            if !self.dry_run && !self.repo.index().holds_good(&id.into())? {
                self.writer.store(BlobKind::Tree, id.into(), &node.encode())?;
            }
            return Ok(Node::Same);
        };
        let new = TreeNode::new(entries).map_err(|e| Error::Corrupt {
            kind: "tree",
            id: id.to_hex(),
            detail: e.to_string(),
        })?;
        let plain = new.encode();
        let new_id = match self.repo.id_key(BlobKind::Tree) {
            Some(key) if self.dry_run => key.hash(&plain),
            _ => self.writer.store_meta(BlobKind::Tree, &plain)?,
        };
        Ok(Node::New(TreeId::new(new_id)))
    }

    /// One entry: `Some` when it changes.
    fn entry(&mut self, e: &Entry, path: &[u8]) -> Result<Option<Entry>> {
        if let Some(new) = self.part(e) {
            self.done.parts += 1;
            return Ok(Some(new));
        }
        let mut new = e.clone();
        match &e.content {
            Content::None | Content::Damaged(_) => return Ok(None),
            Content::Tree(sub) => match self.tree(*sub, path, false)? {
                Node::Same => return Ok(None),
                Node::New(id) => new.content = Content::Tree(id),
                Node::Lost(_) => {
                    self.done.dirs += 1;
                    self.note(path, None);
                    new.content = e.content.clone().into_damaged();
                }
            },
            content => {
                let lost = lost_bytes(self.repo, content, e.size)?;
                if lost == 0 {
                    return Ok(None);
                }
                self.marked_file(path, lost);
                new.content = e.content.clone().into_damaged();
            }
        }
        Ok(Some(new))
    }

    /// A part entry (of an image or an environment) whose part was repaired, pointed at
    /// the repaired snapshot.
    fn part(&self, e: &Entry) -> Option<Entry> {
        let (at, original) = e.xattrs.iter().enumerate().find_map(|(i, (k, v))| {
            let part = k == XATTR_SNAPSHOT || k == XATTR_LAYER_SNAPSHOT;
            let id = std::str::from_utf8(v).ok().and_then(|h| SnapshotId::from_hex(h).ok());
            part.then_some(id).flatten().map(|id| (i, id))
        })?;
        let (repaired, root) = self.parts.get(&original)?;
        let mut new = e.clone();
        if let Some((_, v)) = new.xattrs.get_mut(at) {
            *v = repaired.to_hex().into_bytes();
        }
        new.content = Content::Tree(*root);
        Some(new)
    }

    /// `layer.tar`: marked when a layout chunk, or a member's chunk, is not whole.
    fn layout(&mut self, e: &Entry) -> Result<Option<Entry>> {
        if e.content.is_damaged() {
            return Ok(None);
        }
        let mut lost = 0u64;
        let walked = for_each_record(self.repo, &e.content, &mut |rec| {
            use crate::format::layout::Record;
            if let Record::Member { content, size } | Record::Tail { content, size } = rec {
                lost += lost_bytes(self.repo, &content, size)?;
            }
            Ok(())
        });
        match walked {
            Ok(()) if lost == 0 => return Ok(None),
            Ok(()) => {}
            Err(err) if is_damage(&err) => lost = e.size,
            Err(err) => return Err(err),
        }
        self.marked_file(LAYOUT_ENTRY, lost);
        let mut new = e.clone();
        new.content = e.content.clone().into_damaged();
        Ok(Some(new))
    }

    fn marked_file(&mut self, path: &[u8], lost: u64) {
        self.done.files += 1;
        self.done.lost_bytes += lost;
        self.note(path, Some(lost));
    }

    fn note(&mut self, path: &[u8], lost: Option<u64>) {
        if self.done.paths.len() < MAX_LISTED_PATHS {
            self.done.paths.push((path.to_vec(), lost));
        }
    }
}

/// Bytes of a content (`size` long) that cannot be read: chunks the index does not hold
/// whole, and what is below chunk-list nodes that cannot be read.
///
/// # Errors
/// Index errors, and errors other than damage reading chunk-list nodes.
pub fn lost_bytes(repo: &Repository, content: &Content, size: u64) -> Result<u64> {
    let mut lost = 0u64;
    for_each_piece(repo, content, size, &mut |piece| {
        match piece {
            Piece::Lost(n) => lost += n,
            Piece::Chunk(c) if c.id.is_hole() => {}
            Piece::Chunk(c) => {
                if !repo.index().holds_good(&BlobId::from(c.id))? {
                    lost += u64::from(c.len);
                }
            }
        }
        Ok(())
    })?;
    Ok(lost)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composites_come_after_their_parts() {
        assert!(composite_rank(SourceKind::Tree) < composite_rank(SourceKind::Image));
        assert!(composite_rank(SourceKind::Image) < composite_rank(SourceKind::Environment));
        assert_eq!(
            composite_rank(SourceKind::TarLayer),
            composite_rank(SourceKind::BlockVolume)
        );
    }
}
