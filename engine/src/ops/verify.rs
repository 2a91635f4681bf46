//! `amber verify`: is every snapshot of a vault restorable, and if not, what exactly is lost?
//!
//! The structural check reads only metadata (snapshot files, tree nodes, chunk lists,
//! layouts, all in hot metadata packs) and the store's listing: every snapshot opens,
//! every blob it names is in the index and not known damaged, and every indexed pack is in
//! the store with the length it was indexed with. It reads no data pack, so it neither
//! costs retrievals nor warms up archived packs. `--read-data` (all packs or a subset)
//! then fetches whole packs, checks each against its name (the BLAKE3 of its bytes), and
//! opens and re-hashes every blob in it ([`packs`]).
//!
//! Everything found is reported by what it affects: the pack, the blob, and the snapshots
//! with the paths and byte ranges (a file's, a volume image's, a layer member's) that need
//! it. Damaged and lost blobs are marked in the index so no new snapshot reuses them.

pub mod packs;

use std::collections::{HashMap, HashSet};

use crate::error::{Error, Result};
use crate::format::layout::Record;
use crate::format::snapshot::{Snapshot, SourceKind};
use crate::format::tree::{Content, EntryKind};
use crate::id::{BlobId, PackId, SnapshotId, TreeId};
use crate::ops::content::{Piece, for_each_chunk, for_each_piece};
use crate::ops::join_rel;
use crate::ops::progress::Step;
use crate::ops::tar::for_each_record;
use crate::repo::Repository;

pub use packs::{DataCheck, Subset};

/// How far to look.
#[derive(Clone, Debug, Default)]
pub struct VerifyOptions {
    /// Which packs to read whole (none: structure only).
    pub read_data: DataCheck,
    /// Ask for archived packs to be restored, so that a later run can read them.
    pub warm_up: bool,
}

/// What one problem is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProblemKind {
    /// A snapshot file that does not open.
    Snapshot,
    /// A tree node, chunk list or layout that cannot be read: what is below it is unknown.
    Metadata,
    /// A blob a snapshot names that no pack holds.
    MissingBlob,
    /// A blob that was found damaged (now or before).
    DamagedBlob,
    /// An indexed pack the store no longer has.
    MissingPack,
    /// A pack whose length is not what it was indexed with.
    PackLength,
    /// A pack whose bytes do not hash to its name, or whose header, directory or blobs do
    /// not open.
    DamagedPack,
    /// An index segment that does not open: no data is lost (its packs' directories say
    /// the same), but `amber repair index` should describe its packs anew.
    DamagedSegment,
}

impl ProblemKind {
    /// Its name in reports (`--json` and text).
    pub fn name(self) -> &'static str {
        match self {
            ProblemKind::Snapshot => "snapshot",
            ProblemKind::Metadata => "metadata",
            ProblemKind::MissingBlob => "missing-blob",
            ProblemKind::DamagedBlob => "damaged-blob",
            ProblemKind::MissingPack => "missing-pack",
            ProblemKind::PackLength => "pack-length",
            ProblemKind::DamagedPack => "damaged-pack",
            ProblemKind::DamagedSegment => "damaged-segment",
        }
    }
}

/// A place in a snapshot that needs a damaged or lost object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Affected {
    /// The snapshot.
    pub snapshot: SnapshotId,
    /// The path in it (raw bytes): the file, the volume image, the layer member.
    pub path: Vec<u8>,
    /// The byte range of that file or member that is lost: (offset, length). `None` when
    /// the whole entry or everything below it is affected.
    pub range: Option<(u64, u64)>,
}

/// One problem, with what it affects.
#[derive(Clone, Debug)]
pub struct Problem {
    /// What kind.
    pub kind: ProblemKind,
    /// The pack it is in or about, when known.
    pub pack: Option<PackId>,
    /// The blob (or snapshot) id it is about, when it is about one.
    pub object: Option<String>,
    /// What is wrong.
    pub detail: String,
    /// Where snapshots need it (at most [`MAX_AFFECTED`] places).
    pub affected: Vec<Affected>,
    /// How many places there are in all (more than `affected` holds when cut).
    pub affected_total: u64,
}

/// Places listed per problem; the count goes on.
pub const MAX_AFFECTED: usize = 1000;

/// What a verification found.
#[derive(Clone, Debug, Default)]
pub struct VerifyReport {
    /// Snapshots checked.
    pub snapshots: u64,
    /// Content chunks referenced (counted once per snapshot and place).
    pub chunks: u64,
    /// Packs in the store.
    pub packs: u64,
    /// Packs read whole and checked blob by blob.
    pub packs_read: u64,
    /// Bytes of those packs.
    pub bytes_read: u64,
    /// Archived packs a `--read-data` run did not read (they need a restore first).
    pub cold_not_read: u64,
    /// Archived packs for which a restore was asked (`--warm-up`).
    pub warm_up_requested: u64,
    /// Packs in the store that no snapshot needs (for `amber compact`).
    pub unreferenced_packs: u64,
    /// What is wrong; empty when the vault is clean.
    pub problems: Vec<Problem>,
    /// Snapshots affected by any problem.
    pub damaged_snapshots: Vec<SnapshotId>,
    /// Entries `amber repair snapshots` marked damaged whose data is still lost (at most
    /// [`MAX_AFFECTED`]): known damage, not a problem.
    pub marked: Vec<Marked>,
    /// How many such entries there are in all.
    pub marked_total: u64,
    /// Entries marked damaged whose data is all back (a blob stored again healed them).
    pub healed: u64,
}

/// An entry a repair marked damaged, with what of it is still lost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Marked {
    /// The (repaired) snapshot.
    pub snapshot: SnapshotId,
    /// The entry's path (raw bytes; `layer.tar:<member>` in a layer).
    pub path: Vec<u8>,
    /// Bytes of its content that cannot be read; `None` for a directory whose node is
    /// lost (what was below it is unknown).
    pub lost_bytes: Option<u64>,
}

impl VerifyReport {
    /// Nothing is wrong.
    pub fn clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks the vault as `opts` says.
///
/// # Errors
/// When the check cannot run at all (the store cannot be listed, the index cannot be
/// read); damage is reported in the [`VerifyReport`], never as an error.
pub fn verify(repo: &Repository, opts: &VerifyOptions) -> Result<VerifyReport> {
    verify_with_progress(repo, opts, &|_| {})
}

/// As [`verify`], telling `progress` where it is: phase `packs` (read whole, with
/// `--read-data`) after each pack, then `snapshots` (walked) after each snapshot, and at
/// the start of each.
///
/// # Errors
/// As [`verify`].
pub fn verify_with_progress(
    repo: &Repository,
    opts: &VerifyOptions,
    progress: &(dyn Fn(Step) + Sync),
) -> Result<VerifyReport> {
    let mut report = VerifyReport::default();
    let mut found = Findings::default();
    // Packs first (their listing, then what --read-data reads), so that the one walk of
    // the snapshots can name every place that needs what they lost.
    let store = packs::check_listing(repo, &mut found)?;
    report.packs = store.len() as u64;
    packs::read_data(repo, opts, &store, &mut found, &mut report, progress)?;
    let list = repo.snapshot_list()?;
    for (id, detail) in &list.damaged {
        found.add(ProblemKind::Snapshot, None, Some(id.to_hex()), detail.clone());
        found.snapshots.insert(*id);
    }
    report.snapshots = (list.snapshots.len() + list.damaged.len()) as u64;
    let mut used: HashSet<PackId> = HashSet::new();
    let total = list.snapshots.len() as u64;
    progress(Step::new("snapshots", 0, total));
    for (done, (id, snap)) in (1..).zip(&list.snapshots) {
        let mut visit = |found: &mut Findings, site: &Site, blob: BlobId, len: u64| {
            report.chunks += 1;
            note_use(repo, found, &mut used, site, blob, len);
        };
        visit_snapshot(repo, *id, snap, &mut found, &mut visit);
        progress(Step::new("snapshots", done, total));
    }
    report.unreferenced_packs = store.keys().filter(|p| !used.contains(p)).count() as u64;
    found.mark_damaged(repo);
    report.damaged_snapshots = found.snapshots.iter().copied().collect();
    report.damaged_snapshots.sort_unstable();
    report.problems = found.problems;
    report.marked = found.marked;
    report.marked_total = found.marked_total;
    report.healed = found.healed;
    Ok(report)
}

/// Where in a snapshot a chunk is used.
#[derive(Clone, Debug)]
struct Site {
    snapshot: SnapshotId,
    path: Vec<u8>,
    offset: u64,
}

/// What visits each chunk: the findings, where it is used, the blob, its length.
type Visit<'a> = dyn FnMut(&mut Findings, &Site, BlobId, u64) + 'a;

/// Problems found so far, and the blobs and packs they are about (to find who needs them).
#[derive(Default)]
pub(crate) struct Findings {
    problems: Vec<Problem>,
    /// Blob → the problem about it.
    bad_blobs: HashMap<BlobId, usize>,
    /// Pack → the problem about it.
    bad_packs: HashMap<PackId, usize>,
    /// Snapshots affected.
    snapshots: HashSet<SnapshotId>,
    /// Blobs to mark damaged in the index, with why.
    to_mark: Vec<(BlobId, String)>,
    /// Packs recorded (by a segment or the index) that the store lacks, with why; a
    /// problem once a snapshot is found to need one.
    lost_packs: HashMap<PackId, String>,
    /// Blobs of those packs, and of packs of another length: blob → pack.
    lost_in: HashMap<BlobId, PackId>,
    /// Entries marked damaged that are still short of data (the first [`MAX_AFFECTED`]).
    marked: Vec<Marked>,
    marked_total: u64,
    healed: u64,
}

impl Findings {
    fn add(&mut self, kind: ProblemKind, pack: Option<PackId>, object: Option<String>, detail: String) -> usize {
        self.problems.push(Problem {
            kind,
            pack,
            object,
            detail,
            affected: Vec::new(),
            affected_total: 0,
        });
        self.problems.len() - 1
    }

    /// A problem about a whole pack (its users are found by the walk).
    pub(crate) fn bad_pack(&mut self, kind: ProblemKind, pack: PackId, detail: String) {
        if !self.bad_packs.contains_key(&pack) {
            let at = self.add(kind, Some(pack), None, detail);
            self.bad_packs.insert(pack, at);
        }
    }

    /// A problem about one blob (its users are found by the walk).
    pub(crate) fn bad_blob(&mut self, kind: ProblemKind, pack: Option<PackId>, blob: BlobId, detail: String) -> usize {
        if let Some(&at) = self.bad_blobs.get(&blob) {
            return at;
        }
        self.to_mark.push((blob, detail.clone()));
        let at = self.add(kind, pack, Some(blob.to_hex()), detail);
        self.bad_blobs.insert(blob, at);
        at
    }

    fn affect(&mut self, at: usize, site: &Site, len: Option<u64>) {
        self.snapshots.insert(site.snapshot);
        let Some(p) = self.problems.get_mut(at) else { return };
        p.affected_total += 1;
        if p.affected.len() < MAX_AFFECTED {
            p.affected.push(Affected {
                snapshot: site.snapshot,
                path: site.path.clone(),
                range: len.map(|l| (site.offset, l)),
            });
        }
    }

    /// Notes an entry marked damaged: healed when nothing of it is lost any more.
    fn marked(&mut self, site: &Site, lost_bytes: Option<u64>) {
        if lost_bytes == Some(0) {
            self.healed += 1;
            return;
        }
        self.marked_total += 1;
        if self.marked.len() < MAX_AFFECTED {
            self.marked.push(Marked {
                snapshot: site.snapshot,
                path: site.path.clone(),
                lost_bytes,
            });
        }
    }

    fn mark_damaged(&self, repo: &Repository) {
        for (blob, why) in &self.to_mark {
            repo.index().mark_damaged(*blob, why);
        }
    }
}

/// Notes one use of a content chunk: a blob found bad, or in a bad or lost pack, or
/// unknown to the index, affects this place; the pack of a good one is in use.
fn note_use(repo: &Repository, found: &mut Findings, used: &mut HashSet<PackId>, site: &Site, blob: BlobId, len: u64) {
    if let Some(&at) = found.bad_blobs.get(&blob) {
        return found.affect(at, site, Some(len));
    }
    if let Some(why) = repo.index().damaged(&blob) {
        let at = found.bad_blob(ProblemKind::DamagedBlob, None, blob, why);
        return found.affect(at, site, Some(len));
    }
    let pack = match repo.index().lookup(&blob) {
        Ok(Some(loc)) if !found.bad_packs.contains_key(&loc.pack) => {
            used.insert(loc.pack);
            return;
        }
        Ok(Some(loc)) => Some(loc.pack),
        Ok(None) | Err(_) => found.lost_in.get(&blob).copied(),
    };
    let at = match pack {
        Some(pack) => {
            if !found.bad_packs.contains_key(&pack) {
                let why = found.lost_packs.get(&pack).cloned().unwrap_or_default();
                found.bad_pack(ProblemKind::MissingPack, pack, why);
            }
            let at = found.bad_packs.get(&pack).copied().unwrap_or_default();
            let why = found.problems.get(at).map(|p| p.detail.clone()).unwrap_or_default();
            found.to_mark.push((blob, format!("in pack {pack}: {why}")));
            at
        }
        None => found.bad_blob(
            ProblemKind::MissingBlob,
            None,
            blob,
            "no pack in the store holds it".into(),
        ),
    };
    found.affect(at, site, Some(len));
}

/// A metadata blob needed at `site` (read from a local copy, perhaps): when it, or its
/// pack, was found bad in the store, that problem affects this place.
fn note_meta(repo: &Repository, found: &mut Findings, site: &Site, blob: BlobId) {
    let at = found.bad_blobs.get(&blob).copied().or_else(|| {
        let loc = repo.index().lookup(&blob).ok().flatten()?;
        found.bad_packs.get(&loc.pack).copied()
    });
    if let Some(at) = at {
        found.affect(at, site, None);
    }
}

/// Visits every content chunk snapshot `id` names, with where it is used. Metadata that
/// cannot be read is a problem in `found`, and the walk goes on with the rest.
fn visit_snapshot(repo: &Repository, id: SnapshotId, snap: &Snapshot, found: &mut Findings, visit: &mut Visit<'_>) {
    let mut site = Site {
        snapshot: id,
        path: Vec::new(),
        offset: 0,
    };
    let root = TreeId::new(snap.root);
    if snap.source == SourceKind::TarLayer {
        visit_layer(repo, root, &mut site, found, visit);
    } else {
        visit_tree(repo, root, &mut site, found, visit);
    }
}

/// Every file below `tree` (whose path is `site.path`), depth-first.
fn visit_tree(repo: &Repository, tree: TreeId, site: &mut Site, found: &mut Findings, visit: &mut Visit<'_>) {
    note_meta(repo, found, site, tree.into());
    let node = match repo.load_tree(tree) {
        Ok(node) => node,
        Err(e) => return metadata_problem(found, &e, site),
    };
    let dir = site.path.clone();
    for e in node.entries() {
        site.path = join_rel(&dir, &e.name);
        match (&e.kind, &e.content) {
            (_, Content::Tree(sub)) => visit_tree(repo, *sub, site, found, visit),
            (_, Content::Damaged(inner)) => match inner.as_ref() {
                Content::Tree(sub) => visit_marked_dir(repo, *sub, site, found, visit),
                other => {
                    if let Some(lost) = visit_marked(repo, other, e.size, site, found, visit) {
                        found.marked(site, Some(lost));
                    }
                }
            },
            (EntryKind::File, content) => visit_content(repo, content, site, found, visit),
            _ => {}
        }
    }
    site.path = dir;
}

/// A directory a repair marked damaged: healed when its node reads again (then it is
/// checked as any other), else known damage.
fn visit_marked_dir(repo: &Repository, sub: TreeId, site: &mut Site, found: &mut Findings, visit: &mut Visit<'_>) {
    if repo.load_tree(sub).is_ok() {
        found.healed += 1;
        visit_tree(repo, sub, site, found, visit);
    } else {
        found.marked(site, None);
    }
}

/// The content of an entry a repair marked damaged (`size` bytes): chunks that are whole
/// are checked as any other's; returns the bytes of the rest, which is known damage
/// (`None` when the walk failed, which is a problem in `found`).
fn visit_marked(
    repo: &Repository,
    inner: &Content,
    size: u64,
    site: &mut Site,
    found: &mut Findings,
    visit: &mut Visit<'_>,
) -> Option<u64> {
    site.offset = 0;
    let mut lost = 0u64;
    let walked = for_each_piece(repo, inner, size, &mut |piece| {
        match piece {
            Piece::Lost(n) => {
                lost += n;
                site.offset += n;
            }
            Piece::Chunk(c) => {
                let blob = BlobId::from(c.id);
                let whole = c.id.is_hole() || repo.index().holds_good(&blob).unwrap_or(false);
                if !whole {
                    lost += u64::from(c.len);
                } else if !c.id.is_hole() {
                    visit(found, site, blob, u64::from(c.len));
                }
                site.offset += u64::from(c.len);
            }
        }
        Ok(())
    });
    match walked {
        Ok(()) => Some(lost),
        Err(e) => {
            metadata_problem(found, &e, site);
            None
        }
    }
}

/// A layer: its `layer.tar` layout, member by member, and the other entries as files.
fn visit_layer(repo: &Repository, root: TreeId, site: &mut Site, found: &mut Findings, visit: &mut Visit<'_>) {
    note_meta(repo, found, site, root.into());
    let node = match repo.load_tree(root) {
        Ok(node) => node,
        Err(e) => return metadata_problem(found, &e, site),
    };
    for e in node.entries() {
        site.path.clone_from(&e.name);
        if e.name != b"layer.tar" {
            visit_content(repo, &e.content, site, found, visit);
            continue;
        }
        // A layer a repair marked damaged: its members' lost data is known damage.
        let marked = e.content.is_damaged();
        let mut layer_lost = 0u64;
        let mut member = b"layer.tar".to_vec();
        let walked = for_each_record(repo, &e.content, &mut |rec| {
            match rec {
                Record::Header(h) => member = member_path(&h),
                Record::Member { content, size } | Record::Tail { content, size } => {
                    site.path.clone_from(&member);
                    if marked {
                        let lost = visit_marked(repo, &content, size, site, found, visit).unwrap_or(0);
                        layer_lost += lost;
                        if lost > 0 {
                            found.marked(site, Some(lost));
                        }
                    } else {
                        visit_content(repo, &content, site, found, visit);
                    }
                }
                _ => {}
            }
            Ok(())
        });
        site.path = b"layer.tar".to_vec();
        match walked {
            // A marked layer whose layout cannot be read is lost as a whole: known damage.
            Err(_) if marked => found.marked(site, Some(e.size)),
            Err(err) => metadata_problem(found, &err, site),
            Ok(()) if marked && layer_lost == 0 => found.healed += 1,
            Ok(()) => {}
        }
    }
}

/// `layer.tar:<member name>` from a ustar header block (prefix and name fields).
fn member_path(header: &[u8; 512]) -> Vec<u8> {
    let field = |from: usize, len: usize| -> &[u8] {
        let f = header.get(from..from + len).unwrap_or_default();
        f.split(|&b| b == 0).next().unwrap_or_default()
    };
    let (name, prefix) = (field(0, 100), field(345, 155));
    let mut path = b"layer.tar:".to_vec();
    if !prefix.is_empty() {
        path.extend_from_slice(prefix);
        path.push(b'/');
    }
    path.extend_from_slice(name);
    path
}

/// The chunks of one file's content, with their offsets.
fn visit_content(repo: &Repository, content: &Content, site: &mut Site, found: &mut Findings, visit: &mut Visit<'_>) {
    site.offset = 0;
    let walked = for_each_chunk(repo, content, &mut |c| {
        if !c.id.is_hole() {
            visit(found, site, BlobId::new(*c.id.hash()), u64::from(c.len));
        }
        site.offset += u64::from(c.len);
        Ok(())
    });
    if let Err(e) = walked {
        metadata_problem(found, &e, site);
    }
}

/// A metadata read that failed at `site`: what is below it could not be checked.
fn metadata_problem(found: &mut Findings, e: &Error, site: &Site) {
    let id = match e {
        Error::Corrupt { id, .. } | Error::MissingBlob(id) => BlobId::from_hex(id).ok(),
        _ => None,
    };
    let at = match id {
        Some(blob) => found.bad_blob(ProblemKind::Metadata, None, blob, e.to_string()),
        None => found.add(ProblemKind::Metadata, None, None, e.to_string()),
    };
    found.affect(at, site, None);
}
