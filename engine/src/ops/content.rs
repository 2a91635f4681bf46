//! Walking the chunks of a file's content.
//!
//! Content a repair marked damaged ([`Content::Damaged`]) is walked through its mark. The
//! strict walks ([`for_each_chunk`], [`ChunkCursor::next_chunk`]) fail where a chunk-list
//! node cannot be read; the tolerant ones ([`for_each_piece`], [`ChunkCursor::tolerant`])
//! report the bytes below such a node as [`Piece::Lost`] (each list entry records how many
//! bytes are under it) and go on, which is how a damaged file is restored in part.

use crate::error::{Error, Result};
use crate::format::chunklist::{ListEntry, MAX_LEVEL};
use crate::format::tree::{ChunkRef, Content};
use crate::id::{BlobId, ChunkId, ListId};
use crate::repo::{Repository, is_damage};

/// One stretch of a content as a tolerant walk sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Piece {
    /// A chunk (still to be read: it may be lost too).
    Chunk(ChunkRef),
    /// This many bytes whose chunk-list node cannot be read: which chunks they were is
    /// unknown.
    Lost(u64),
}

/// Calls `visit` for every chunk of `content`, in order, loading chunk-list nodes as needed.
///
/// # Errors
/// Errors loading nodes, or what `visit` returns.
pub fn for_each_chunk(
    repo: &Repository,
    content: &Content,
    visit: &mut dyn FnMut(ChunkRef) -> Result<()>,
) -> Result<()> {
    let mut cursor = ChunkCursor::new(repo, content);
    while let Some(c) = cursor.next_chunk()? {
        visit(c)?;
    }
    Ok(())
}

/// Calls `visit` for every piece of `content` (`size` bytes long), in order: chunks, and
/// the lengths below chunk-list nodes that are missing or damaged.
///
/// # Errors
/// Errors other than damage reading nodes (a store that cannot be reached), or what
/// `visit` returns.
pub fn for_each_piece(
    repo: &Repository,
    content: &Content,
    size: u64,
    visit: &mut dyn FnMut(Piece) -> Result<()>,
) -> Result<()> {
    let mut cursor = ChunkCursor::tolerant(repo, content, size);
    while let Some(p) = cursor.next_piece()? {
        visit(p)?;
    }
    Ok(())
}

/// Whether every blob `content` names is in the index and not known damaged, reading the
/// chunk-list nodes on the way (one that cannot be read makes the content not intact).
/// Holes name nothing. This is what may be reused from a parent snapshot without reading
/// the file again. Content marked damaged is never intact, even when it has healed: a new
/// snapshot reads the file again.
pub fn content_intact(repo: &Repository, content: &Content) -> bool {
    let index = repo.index();
    let good = |id: BlobId| index.holds_good(&id).unwrap_or(false);
    match content {
        Content::None => true,
        Content::Tree(_) | Content::Damaged(_) => false,
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

/// Yields the chunks of a content one at a time, loading chunk-list nodes lazily, so a
/// volume's list can be followed in step with its blocks without holding it in memory.
pub struct ChunkCursor<'r> {
    repo: &'r Repository,
    inline: std::vec::IntoIter<ChunkRef>,
    /// Open nodes, deepest last: (entries, next position, level).
    stack: Vec<(Vec<ListEntry>, usize, u8)>,
    /// The root still to load: (id, height, bytes below it).
    pending_root: Option<(ListId, u8, u64)>,
    /// Whether a node that cannot be read is a [`Piece::Lost`] rather than an error.
    tolerant: bool,
}

impl<'r> ChunkCursor<'r> {
    /// A cursor at the first chunk of `content` (through a damage mark).
    pub fn new(repo: &'r Repository, content: &Content) -> Self {
        Self::over(repo, content, 0, false)
    }

    /// A cursor that reports what is below an unreadable node as lost; `size` is the
    /// content's length (the bytes below the root).
    pub fn tolerant(repo: &'r Repository, content: &Content, size: u64) -> Self {
        Self::over(repo, content, size, true)
    }

    fn over(repo: &'r Repository, content: &Content, size: u64, tolerant: bool) -> Self {
        let (inline, pending_root) = match content.refs() {
            Content::Inline(chunks) => (chunks.clone(), None),
            Content::List { root, height } => (Vec::new(), Some((*root, *height, size))),
            Content::None | Content::Tree(_) | Content::Damaged(_) => (Vec::new(), None),
        };
        ChunkCursor {
            repo,
            inline: inline.into_iter(),
            stack: Vec::new(),
            pending_root,
            tolerant,
        }
    }

    /// Opens node `id` at `level`; `Ok(false)` when it cannot be read and the cursor is
    /// tolerant.
    fn push_node(&mut self, id: ListId, level: u8) -> Result<bool> {
        let loaded = self.repo.load_list(id).and_then(|node| {
            if node.level != level || level > MAX_LEVEL {
                return Err(Error::Corrupt {
                    kind: "chunk list",
                    id: id.to_hex(),
                    detail: format!("level {} where {level} was expected", node.level),
                });
            }
            Ok(node)
        });
        match loaded {
            Ok(node) => {
                self.stack.push((node.entries, 0, level));
                Ok(true)
            }
            Err(e) if self.tolerant && is_damage(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The next chunk, or `None` at the end.
    ///
    /// # Errors
    /// Errors loading or checking chunk-list nodes.
    pub fn next_chunk(&mut self) -> Result<Option<ChunkRef>> {
        match self.next_piece()? {
            Some(Piece::Chunk(c)) => Ok(Some(c)),
            Some(Piece::Lost(_)) => Err(Error::Pipeline("a strict cursor met a lost piece".into())),
            None => Ok(None),
        }
    }

    /// The next piece, or `None` at the end. A strict cursor only yields chunks.
    ///
    /// # Errors
    /// Errors loading or checking chunk-list nodes (for a tolerant cursor, only those
    /// that are not damage).
    pub fn next_piece(&mut self) -> Result<Option<Piece>> {
        if let Some(c) = self.inline.next() {
            return Ok(Some(Piece::Chunk(c)));
        }
        if let Some((root, height, size)) = self.pending_root.take()
            && !self.push_node(root, height)?
        {
            return Ok(Some(Piece::Lost(size)));
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
                return Ok(Some(Piece::Chunk(ChunkRef {
                    id: ChunkId::new(e.id),
                    len,
                })));
            }
            let child_level = *level - 1;
            if !self.push_node(ListId::new(e.id), child_level)? {
                return Ok(Some(Piece::Lost(e.len)));
            }
        }
    }
}
