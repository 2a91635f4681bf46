//! Walking a snapshot's tree (for `ls`).

use crate::error::{Error, Result};
use crate::format::tree::{Content, Entry, EntryKind};
use crate::id::TreeId;
use crate::ops::{display_path, join_rel};
use crate::repo::Repository;

/// Finds the tree node at `subpath` (`a/b/c` as raw name bytes, empty for the root).
///
/// # Errors
/// [`Error::NoSuchPath`] when a component is missing or not a directory.
pub fn find_dir(repo: &Repository, root: TreeId, subpath: &[u8]) -> Result<TreeId> {
    let mut id = root;
    for part in subpath.split(|&b| b == b'/').filter(|p| !p.is_empty() && *p != b".") {
        let node = repo.load_tree(id)?;
        match node.get(part) {
            Some(Entry {
                kind: EntryKind::Dir,
                content: Content::Tree(sub),
                ..
            }) => id = *sub,
            _ => return Err(Error::NoSuchPath(display_path(subpath))),
        }
    }
    Ok(id)
}

/// Visits every entry below `tree` depth-first, in name order, with its path (raw bytes,
/// `prefix` joined with the names).
///
/// # Errors
/// Errors loading nodes, or what `visit` returns.
pub fn walk(
    repo: &Repository,
    tree: TreeId,
    prefix: &[u8],
    visit: &mut dyn FnMut(&[u8], &Entry) -> Result<()>,
) -> Result<()> {
    let node = repo.load_tree(tree)?;
    for e in node.entries() {
        let path = join_rel(prefix, &e.name);
        visit(&path, e)?;
        match &e.content {
            Content::Tree(sub) => walk(repo, *sub, &path, visit)?,
            // A directory a repair marked damaged: walked once its node reads again.
            Content::Damaged(inner) => {
                if let Content::Tree(sub) = inner.as_ref()
                    && repo.load_tree(*sub).is_ok()
                {
                    walk(repo, *sub, &path, visit)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}
