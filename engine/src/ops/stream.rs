//! Storing a byte stream as content: chunked, deduplicated, sealed, and described by a
//! chunk list. Shared by files, tar members and tar layouts, so the same bytes get the
//! same chunk ids whatever they arrive in.

use std::io::{ErrorKind, Read};

use crate::chunker::ContentChunker;
use crate::error::{Error, Result};
use crate::format::blob::BlobKind;
use crate::format::chunklist::{ListBuilder, ListNode};
use crate::format::tree::{ChunkRef, Content};
use crate::id::{BlobId, ChunkId, ListId};
use crate::ops::progress::Progress;
use crate::repo::writer::BlobWriter;

/// Bytes read from a source per `read` call.
pub const READ_BUFFER: usize = 1024 * 1024;

/// Reading the source failed (skip or report it), or the engine failed (abort).
#[derive(Debug)]
pub enum StreamError {
    /// The source could not be read.
    Source(std::io::Error),
    /// Storing failed.
    Engine(Error),
}

impl From<Error> for StreamError {
    fn from(e: Error) -> Self {
        StreamError::Engine(e)
    }
}

type NodeSink<'w> = Box<dyn FnMut(&ListNode) -> Result<ListId> + 'w>;

/// Push bytes in; chunks are stored as they are cut.
pub struct ContentSink<'w> {
    writer: &'w BlobWriter,
    kind: BlobKind,
    chunker: ContentChunker,
    list: ListBuilder<NodeSink<'w>>,
    total: u64,
}

impl<'w> ContentSink<'w> {
    /// A sink storing chunks of `kind` (content chunks or tar-layout chunks).
    pub fn new(writer: &'w BlobWriter, kind: BlobKind) -> Self {
        let repo = writer.repo();
        let sink: NodeSink<'w> =
            Box::new(move |node: &ListNode| Ok(ListId::new(writer.store_meta(BlobKind::ChunkList, &node.encode())?)));
        ContentSink {
            writer,
            kind,
            chunker: ContentChunker::new(repo.config().chunker, repo.gear_table()),
            list: ListBuilder::new(sink),
            total: 0,
        }
    }

    /// Adds bytes.
    ///
    /// # Errors
    /// Store errors.
    pub fn push(&mut self, data: &[u8]) -> Result<()> {
        self.total += data.len() as u64;
        self.chunker.push(data);
        self.drain()
    }

    fn drain(&mut self) -> Result<()> {
        while let Some(chunk) = self.chunker.next_chunk() {
            let len = u32::try_from(chunk.len()).map_err(|_| Error::Pipeline("chunk over 4 GiB".into()))?;
            // An all-zero content chunk is a hole: stored nowhere, restored sparse.
            if self.kind == BlobKind::Chunk && chunk.iter().all(|&b| b == 0) {
                self.list.push(ChunkRef { id: ChunkId::HOLE, len })?;
                continue;
            }
            let key = self
                .writer
                .repo()
                .id_key(self.kind)
                .ok_or_else(|| Error::Pipeline("not content".into()))?;
            let id = key.hash(&chunk);
            self.writer.store(self.kind, BlobId::new(id), &chunk)?;
            self.list.push(ChunkRef {
                id: ChunkId::new(id),
                len,
            })?;
        }
        Ok(())
    }

    /// Ends the stream; returns its content and length.
    ///
    /// # Errors
    /// Store errors.
    pub fn finish(mut self) -> Result<(Content, u64)> {
        self.chunker.finish();
        self.drain()?;
        Ok((self.list.finish()?, self.total))
    }
}

/// Reads up to `limit` bytes from `src` (to its end when it has fewer) and stores them.
///
/// # Errors
/// [`StreamError::Source`] for read errors, [`StreamError::Engine`] for store errors.
pub fn store_stream(
    writer: &BlobWriter,
    src: &mut dyn Read,
    limit: u64,
    progress: &Progress,
) -> std::result::Result<(Content, u64), StreamError> {
    let mut sink = ContentSink::new(writer, BlobKind::Chunk);
    let mut buf = vec![0u8; READ_BUFFER];
    let mut left = limit;
    while left > 0 {
        let want = usize::try_from(left.min(READ_BUFFER as u64)).unwrap_or(READ_BUFFER);
        let n = match src.read(buf.get_mut(..want).unwrap_or_default()) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(StreamError::Source(e)),
        };
        left -= n as u64;
        progress.add_bytes(n as u64);
        sink.push(buf.get(..n).unwrap_or_default())?;
    }
    Ok(sink.finish()?)
}

/// Stores bytes held in memory as content.
///
/// # Errors
/// Store errors.
pub fn store_bytes(writer: &BlobWriter, data: &[u8]) -> Result<Content> {
    let mut sink = ContentSink::new(writer, BlobKind::Chunk);
    sink.push(data)?;
    Ok(sink.finish()?.0)
}
