//! Walking the chunks of a file's content.

use crate::error::{Error, Result};
use crate::format::chunklist::MAX_LEVEL;
use crate::format::tree::{ChunkRef, Content};
use crate::id::{BlobId, ChunkId, ListId};
use crate::repo::Repository;

/// Calls `visit` for every chunk of `content`, in order, loading chunk-list nodes as needed.
///
/// # Errors
/// Errors loading nodes, or what `visit` returns.
pub fn for_each_chunk(
    repo: &Repository,
    content: &Content,
    visit: &mut dyn FnMut(ChunkRef) -> Result<()>,
) -> Result<()> {
    match content {
        Content::None | Content::Tree(_) => Ok(()),
        Content::Inline(chunks) => chunks.iter().try_for_each(|c| visit(*c)),
        Content::List { root, height } => walk_list(repo, *root, *height, visit),
    }
}

/// Whether every blob `content` names is in the index and not known damaged, reading the
/// chunk-list nodes on the way (one that cannot be read makes the content not intact).
/// Holes name nothing. This is what may be reused from a parent snapshot without reading
/// the file again.
pub fn content_intact(repo: &Repository, content: &Content) -> bool {
    let index = repo.index();
    let good = |id: BlobId| index.holds_good(&id).unwrap_or(false);
    match content {
        Content::None => true,
        Content::Tree(_) => false,
        Content::Inline(chunks) => chunks.iter().all(|c| c.id.is_hole() || good(c.id.into())),
        Content::List { root, .. } => {
            if !good((*root).into()) {
                return false;
            }
            let mut intact = true;
            let walked = for_each_chunk(repo, content, &mut |c| {
                intact &= c.id.is_hole() || good(c.id.into());
                Ok(())
            });
            walked.is_ok() && intact
        }
    }
}

fn walk_list(repo: &Repository, id: ListId, level: u8, visit: &mut dyn FnMut(ChunkRef) -> Result<()>) -> Result<()> {
    let node = repo.load_list(id)?;
    if node.level != level || level > MAX_LEVEL {
        return Err(Error::Corrupt {
            kind: "chunk list",
            id: id.to_hex(),
            detail: format!("level {} where {level} was expected", node.level),
        });
    }
    for e in node.entries {
        if level == 0 {
            let len = u32::try_from(e.len).map_err(|_| Error::Corrupt {
                kind: "chunk list",
                id: id.to_hex(),
                detail: format!("chunk of {} bytes", e.len),
            })?;
            visit(ChunkRef {
                id: ChunkId::new(e.id),
                len,
            })?;
        } else {
            walk_list(repo, ListId::new(e.id), level - 1, visit)?;
        }
    }
    Ok(())
}

/// Yields the chunks of a content one at a time, loading chunk-list nodes lazily, so a
/// volume's list can be followed in step with its blocks without holding it in memory.
pub struct ChunkCursor<'r> {
    repo: &'r Repository,
    inline: std::vec::IntoIter<ChunkRef>,
    /// Open nodes, deepest last: (entries, next position, level).
    stack: Vec<(Vec<crate::format::chunklist::ListEntry>, usize, u8)>,
    pending_root: Option<(ListId, u8)>,
}

impl<'r> ChunkCursor<'r> {
    /// A cursor at the first chunk of `content`.
    pub fn new(repo: &'r Repository, content: &Content) -> Self {
        let (inline, pending_root) = match content {
            Content::Inline(chunks) => (chunks.clone(), None),
            Content::List { root, height } => (Vec::new(), Some((*root, *height))),
            Content::None | Content::Tree(_) => (Vec::new(), None),
        };
        ChunkCursor {
            repo,
            inline: inline.into_iter(),
            stack: Vec::new(),
            pending_root,
        }
    }

    fn push_node(&mut self, id: ListId, level: u8) -> Result<()> {
        let node = self.repo.load_list(id)?;
        if node.level != level || level > MAX_LEVEL {
            return Err(Error::Corrupt {
                kind: "chunk list",
                id: id.to_hex(),
                detail: format!("level {} where {level} was expected", node.level),
            });
        }
        self.stack.push((node.entries, 0, level));
        Ok(())
    }

    /// The next chunk, or `None` at the end.
    ///
    /// # Errors
    /// Errors loading or checking chunk-list nodes.
    pub fn next_chunk(&mut self) -> Result<Option<ChunkRef>> {
        if let Some(c) = self.inline.next() {
            return Ok(Some(c));
        }
        if let Some((root, height)) = self.pending_root.take() {
            self.push_node(root, height)?;
        }
        loop {
            let Some((entries, pos, level)) = self.stack.last_mut() else {
                return Ok(None);
            };
            let Some(e) = entries.get(*pos).copied() else {
                self.stack.pop();
                continue;
            };
            *pos += 1;
            if *level == 0 {
                let len = u32::try_from(e.len).map_err(|_| Error::Corrupt {
                    kind: "chunk list",
                    id: e.id.to_hex(),
                    detail: format!("chunk of {} bytes", e.len),
                })?;
                return Ok(Some(ChunkRef {
                    id: ChunkId::new(e.id),
                    len,
                }));
            }
            let child_level = *level - 1;
            self.push_node(ListId::new(e.id), child_level)?;
        }
    }
}
