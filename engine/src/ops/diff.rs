//! Differences between two tree snapshots. Identical subtrees share an id and are skipped
//! without being read, so the cost follows what changed.

use std::cmp::Ordering;

use crate::error::Result;
use crate::format::tree::{Content, Entry, EntryKind};
use crate::id::TreeId;
use crate::ops::join_rel;
use crate::ops::walk::walk;
use crate::repo::Repository;

/// How a path differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// Only in the second snapshot.
    Added,
    /// Only in the first snapshot.
    Removed,
    /// Content differs.
    Modified,
    /// Same content; mode, owner, times, xattrs or link target differ.
    Metadata,
    /// The type changed (for example file → symlink).
    TypeChanged,
}

impl ChangeKind {
    /// restic-style one-letter code.
    pub fn letter(self) -> char {
        match self {
            ChangeKind::Added => '+',
            ChangeKind::Removed => '-',
            ChangeKind::Modified => 'M',
            ChangeKind::Metadata => 'U',
            ChangeKind::TypeChanged => 'T',
        }
    }
    /// Name for JSON.
    pub fn name(self) -> &'static str {
        match self {
            ChangeKind::Added => "added",
            ChangeKind::Removed => "removed",
            ChangeKind::Modified => "modified",
            ChangeKind::Metadata => "metadata",
            ChangeKind::TypeChanged => "type",
        }
    }
}

/// One changed path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// Path relative to the snapshot root, raw name bytes joined by `/`.
    pub path: Vec<u8>,
    /// How it changed.
    pub kind: ChangeKind,
    /// Its type (in the second snapshot, or the first when removed).
    pub entry_kind: EntryKind,
    /// Size before (0 when added).
    pub size_before: u64,
    /// Size after (0 when removed).
    pub size_after: u64,
}

/// Every change from `a` to `b`, in path order.
///
/// # Errors
/// Errors loading tree nodes.
pub fn diff_trees(repo: &Repository, a: TreeId, b: TreeId) -> Result<Vec<Change>> {
    let mut out = Vec::new();
    diff_nodes(repo, Some(a), Some(b), b"", &mut out)?;
    Ok(out)
}

fn diff_nodes(
    repo: &Repository,
    a: Option<TreeId>,
    b: Option<TreeId>,
    prefix: &[u8],
    out: &mut Vec<Change>,
) -> Result<()> {
    if a == b {
        return Ok(());
    }
    let load = |id: Option<TreeId>| id.map(|i| repo.load_tree(i).map(|n| n.into_entries())).transpose();
    let (left, right) = (load(a)?.unwrap_or_default(), load(b)?.unwrap_or_default());
    let (mut i, mut j) = (0, 0);
    loop {
        let step = match (left.get(i), right.get(j)) {
            (None, None) => break,
            (Some(x), None) => Step::Removed(x),
            (None, Some(y)) => Step::Added(y),
            (Some(x), Some(y)) => match x.name.cmp(&y.name) {
                Ordering::Less => Step::Removed(x),
                Ordering::Greater => Step::Added(y),
                Ordering::Equal => Step::Both(x, y),
            },
        };
        match step {
            Step::Removed(x) => {
                one_side(repo, x, prefix, ChangeKind::Removed, out)?;
                i += 1;
            }
            Step::Added(y) => {
                one_side(repo, y, prefix, ChangeKind::Added, out)?;
                j += 1;
            }
            Step::Both(x, y) => {
                both_sides(repo, x, y, prefix, out)?;
                i += 1;
                j += 1;
            }
        }
    }
    Ok(())
}

enum Step<'a> {
    Removed(&'a Entry),
    Added(&'a Entry),
    Both(&'a Entry, &'a Entry),
}

fn change(path: Vec<u8>, kind: ChangeKind, before: Option<&Entry>, after: Option<&Entry>) -> Change {
    let entry_kind = after.or(before).map_or(EntryKind::File, |e| e.kind);
    Change {
        path,
        kind,
        entry_kind,
        size_before: before.map_or(0, |e| e.size),
        size_after: after.map_or(0, |e| e.size),
    }
}

/// Reports an entry present on one side only, and everything below it.
fn one_side(repo: &Repository, e: &Entry, prefix: &[u8], kind: ChangeKind, out: &mut Vec<Change>) -> Result<()> {
    let path = join_rel(prefix, &e.name);
    let (before, after) = if kind == ChangeKind::Added {
        (None, Some(e))
    } else {
        (Some(e), None)
    };
    out.push(change(path.clone(), kind, before, after));
    if let Content::Tree(sub) = e.content {
        walk(repo, sub, &path, &mut |p, child| {
            let (before, after) = if kind == ChangeKind::Added {
                (None, Some(child))
            } else {
                (Some(child), None)
            };
            out.push(change(p.to_vec(), kind, before, after));
            Ok(())
        })?;
    }
    Ok(())
}

fn both_sides(repo: &Repository, x: &Entry, y: &Entry, prefix: &[u8], out: &mut Vec<Change>) -> Result<()> {
    let path = join_rel(prefix, &y.name);
    if x.kind != y.kind {
        out.push(change(path.clone(), ChangeKind::TypeChanged, Some(x), Some(y)));
        let (old_sub, new_sub) = (subtree(x), subtree(y));
        return diff_nodes(repo, old_sub, new_sub, &path, out);
    }
    if let (Content::Tree(a), Content::Tree(b)) = (&x.content, &y.content) {
        if !same_metadata(x, y) {
            out.push(change(path.clone(), ChangeKind::Metadata, Some(x), Some(y)));
        }
        return diff_nodes(repo, Some(*a), Some(*b), &path, out);
    }
    if x.content != y.content || x.size != y.size {
        out.push(change(path, ChangeKind::Modified, Some(x), Some(y)));
    } else if !same_metadata(x, y) {
        out.push(change(path, ChangeKind::Metadata, Some(x), Some(y)));
    }
    Ok(())
}

fn subtree(e: &Entry) -> Option<TreeId> {
    match e.content {
        Content::Tree(id) => Some(id),
        _ => None,
    }
}

/// Compares what a restore would recreate; inode, device, ctime and link count are
/// change-detection data and do not count.
fn same_metadata(x: &Entry, y: &Entry) -> bool {
    x.mode == y.mode
        && x.uid == y.uid
        && x.gid == y.gid
        && x.mtime == y.mtime
        && x.link_target == y.link_target
        && x.xattrs == y.xattrs
        && x.rdev == y.rdev
}
