//! Walking the chunks of a file's content.

use crate::error::{Error, Result};
use crate::format::chunklist::MAX_LEVEL;
use crate::format::tree::{ChunkRef, Content};
use crate::id::{ChunkId, ListId};
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
