//! Environment snapshots: the parts of one Jupyter environment taken at one moment (its
//! container image, its trees of notebooks and data, its volume), tied together with the
//! environment's record, and committed only after every part is. See
//! `format-spec/environment.md`.

use std::collections::BTreeSet;

use crate::error::{Error, Result};
use crate::format::blob::BlobKind;
use crate::format::snapshot::{Snapshot, SnapshotStats, SourceKind};
use crate::format::tree::{Content, Entry, EntryKind, TreeNode};
use crate::id::{SnapshotId, TreeId};
use crate::ops::Labels;
use crate::repo::Repository;
use crate::repo::writer::BlobWriter;

/// xattr of a part entry: the part's snapshot id (64 hex digits).
pub const XATTR_SNAPSHOT: &[u8] = b"amber.part.snapshot";
/// xattr of a part entry: `image`, `tree` or `volume`.
pub const XATTR_KIND: &[u8] = b"amber.part.kind";
/// xattr of a part entry: where it is mounted in the environment (absolute path).
pub const XATTR_MOUNT: &[u8] = b"amber.part.mount";

/// Metadata keys of the environment's record, beside free metadata.
pub const RECORD_KEYS: [&str; 4] = ["experiment", "funding", "criticality", "packages"];

/// What a part is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PartKind {
    /// The container image.
    Image,
    /// A directory tree (notebooks, data).
    Tree,
    /// A block volume.
    Volume,
}

impl PartKind {
    /// The name in xattrs, JSON and flags.
    pub fn name(self) -> &'static str {
        match self {
            PartKind::Image => "image",
            PartKind::Tree => "tree",
            PartKind::Volume => "volume",
        }
    }

    /// Parses [`PartKind::name`].
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for another name.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "image" => Ok(PartKind::Image),
            "tree" => Ok(PartKind::Tree),
            "volume" => Ok(PartKind::Volume),
            other => Err(Error::InvalidArgument(format!(
                "part kind {other:?}: expected image, tree or volume"
            ))),
        }
    }

    fn source(self) -> SourceKind {
        match self {
            PartKind::Image => SourceKind::Image,
            PartKind::Tree => SourceKind::Tree,
            PartKind::Volume => SourceKind::BlockVolume,
        }
    }
}

/// One part of an environment snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    /// What it is.
    pub kind: PartKind,
    /// Its snapshot.
    pub snapshot: SnapshotId,
    /// Where it is mounted (empty for the image).
    pub mount: String,
}

impl Part {
    /// The entry name of the part in the environment's root: `image`, or the kind and the
    /// mount point with `/` as `_` (`tree_home_researcher_notebooks`).
    pub fn entry_name(&self) -> String {
        match self.kind {
            PartKind::Image => "image".into(),
            k => format!("{}{}", k.name(), self.mount.replace('/', "_")),
        }
    }
}

/// Checks a mount point: absolute, normalised, UTF-8 text without NUL.
///
/// # Errors
/// [`Error::InvalidArgument`] naming it.
pub fn check_mount(mount: &str) -> Result<()> {
    let ok = mount.starts_with('/')
        && mount.len() > 1
        && !mount.ends_with('/')
        && !mount.contains('\0')
        && mount.split('/').skip(1).all(|c| !c.is_empty() && c != "." && c != "..");
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "mount point {mount:?} must be an absolute path like /home/researcher/notebooks"
        )))
    }
}

/// Commits an environment snapshot naming `parts`, each a committed snapshot of this
/// vault of the right kind: at most one image, at most one volume, any number of trees, at
/// least one part in all, no mount point twice.
///
/// # Errors
/// [`Error::InvalidArgument`] for bad parts; [`Error::NoSuchSnapshot`] for a missing one;
/// store errors.
pub fn commit_environment(repo: &Repository, parts: &[Part], labels: &Labels) -> Result<(SnapshotId, Snapshot)> {
    check_parts(parts)?;
    let mut entries = Vec::new();
    let mut stats = SnapshotStats::default();
    for part in parts {
        let snap = repo
            .load_snapshot(part.snapshot)
            .map_err(|_| Error::NoSuchSnapshot(part.snapshot.to_hex()))?;
        if snap.source != part.kind.source() {
            return Err(Error::InvalidArgument(format!(
                "part {} is a {} snapshot, not a {}",
                part.snapshot,
                snap.source.name(),
                part.kind.name()
            )));
        }
        stats.files += snap.stats.files;
        stats.dirs += snap.stats.dirs;
        stats.bytes += snap.stats.bytes;
        entries.push(part_entry(part, &snap));
    }
    let writer = BlobWriter::new(repo)?;
    let root = writer.store_meta(BlobKind::Tree, &TreeNode::new(entries)?.encode())?;
    let written = writer.finish()?;
    stats.bytes_new = written.bytes_new;
    stats.blobs_new = written.blobs_new;
    let snapshot = labels.snapshot(SourceKind::Environment, root, None, "environment".into(), stats);
    let id = repo.commit_snapshot(&snapshot)?;
    Ok((id, snapshot))
}

fn check_parts(parts: &[Part]) -> Result<()> {
    if parts.is_empty() {
        return Err(Error::InvalidArgument(
            "an environment snapshot needs at least one part".into(),
        ));
    }
    for kind in [PartKind::Image, PartKind::Volume] {
        if parts.iter().filter(|p| p.kind == kind).count() > 1 {
            return Err(Error::InvalidArgument(format!(
                "an environment has at most one {}",
                kind.name()
            )));
        }
    }
    let mut mounts = BTreeSet::new();
    for p in parts {
        if p.kind == PartKind::Image {
            continue;
        }
        check_mount(&p.mount)?;
        if !mounts.insert(p.mount.as_str()) {
            return Err(Error::InvalidArgument(format!(
                "mount point {} is given twice",
                p.mount
            )));
        }
    }
    Ok(())
}

fn part_entry(part: &Part, snap: &Snapshot) -> Entry {
    let mut e = Entry::new(part.entry_name().into_bytes(), EntryKind::Dir);
    e.mode = 0o755;
    e.content = Content::Tree(TreeId::new(snap.root));
    e.xattrs = vec![
        (XATTR_KIND.to_vec(), part.kind.name().as_bytes().to_vec()),
        (XATTR_SNAPSHOT.to_vec(), part.snapshot.to_hex().into_bytes()),
    ];
    if part.kind != PartKind::Image {
        e.xattrs.push((XATTR_MOUNT.to_vec(), part.mount.as_bytes().to_vec()));
    }
    e.xattrs.sort();
    e
}

/// The parts of an environment snapshot, from its root node.
///
/// # Errors
/// [`Error::InvalidArgument`] when `snap` is not an environment; [`Error::Corrupt`] for a
/// part entry without its xattrs; store errors.
pub fn parts_of(repo: &Repository, id: SnapshotId, snap: &Snapshot) -> Result<Vec<Part>> {
    if snap.source != SourceKind::Environment {
        return Err(Error::InvalidArgument(format!(
            "snapshot {id} is a {} snapshot, not an environment",
            snap.source.name()
        )));
    }
    repo.load_tree(TreeId::new(snap.root))?
        .entries()
        .iter()
        .map(|e| {
            part_of_entry(e).map_err(|detail| Error::Corrupt {
                kind: "environment",
                id: id.to_hex(),
                detail,
            })
        })
        .collect()
}

/// Reads a part entry's xattrs.
///
/// # Errors
/// What is missing or malformed.
pub fn part_of_entry(e: &Entry) -> std::result::Result<Part, String> {
    let attr = |name: &[u8]| {
        e.xattrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    };
    let shown = e.name_lossy();
    let kind = attr(XATTR_KIND).ok_or_else(|| format!("part {shown} has no kind"))?;
    let kind = PartKind::parse(&kind).map_err(|e| e.to_string())?;
    let snapshot = attr(XATTR_SNAPSHOT)
        .and_then(|h| SnapshotId::from_hex(&h).ok())
        .ok_or_else(|| format!("part {shown} names no snapshot"))?;
    Ok(Part {
        kind,
        snapshot,
        mount: attr(XATTR_MOUNT).unwrap_or_default(),
    })
}
