//! Compressed layer streams kept exactly: a [`StreamRecorder`] watches the stream as given
//! and writes a recipe ([`crate::format::recipe`]) that rebuilds it from the uncompressed
//! stream; a [`StreamRebuilder`] takes the uncompressed stream and writes the original.
//!
//! A gzip member's deflate data goes through preflate-rs, which splits it into the plain
//! text (stored file by file, as every layer is) and small corrections. Where preflate
//! cannot model the compressor (it has no model of Go's `compress/flate`, which docker and
//! umoci use), or for zstd, the recipe keeps the compressed bytes themselves (LITERAL ops),
//! and says why in [`RecipeSummary::kept_compressed`].

use std::io::{Cursor, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};

use preflate_rs::{ExitCode, PreflateConfig, PreflateStreamProcessor, RecreateStreamProcessor};

use crate::error::{Error, Result};
use crate::format::blob::BlobKind;
use crate::format::recipe::{self, MAX_LITERAL, MAX_PLAIN, RecipeOp, RecipeReader};
use crate::format::tree::Content;
use crate::ops::content::ChunkCursor;
use crate::ops::stream::ContentSink;
use crate::repo::Repository;
use crate::repo::writer::BlobWriter;

/// Compressed bytes handed to preflate at a time.
const PIECE: usize = 1024 * 1024;
/// Compressed bytes buffered while waiting for a deflate block to end before giving up.
const MAX_PENDING: usize = 64 * 1024 * 1024;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// What a finished recipe holds.
#[derive(Clone, Debug)]
pub struct RecipeSummary {
    /// The recipe's content.
    pub content: Content,
    /// Its length in bytes.
    pub len: u64,
    /// Bytes of corrections (the cost of rebuilding the deflate data).
    pub corrections: u64,
    /// Bytes of the stream kept as they were given (headers, trailers, and whatever could
    /// not be rebuilt).
    pub literal: u64,
    /// Why compressed bytes were kept instead of rebuilt, when they were.
    pub kept_compressed: Option<String>,
}

enum State {
    /// Before the first bytes: nothing known yet.
    Start,
    /// Expecting a gzip member header.
    Header,
    Deflate(Box<PreflateStreamProcessor>),
    Trailer,
    /// Keeping every further byte as given.
    Literal,
    /// Not a compressed stream: no recipe.
    Off,
}

/// Watches a stream as given and stores the recipe that rebuilds it.
pub struct StreamRecorder<'w> {
    sink: ContentSink<'w>,
    pending: Vec<u8>,
    /// Pending bytes needed before preflate is asked again.
    need: usize,
    state: State,
    corrections: u64,
    literal: u64,
    kept_compressed: Option<String>,
    error: Option<Error>,
}

impl<'w> StreamRecorder<'w> {
    /// A recorder storing its recipe through `writer`.
    pub fn new(writer: &'w BlobWriter) -> Self {
        StreamRecorder {
            sink: ContentSink::new(writer, BlobKind::Chunk),
            pending: Vec::new(),
            need: PIECE,
            state: State::Start,
            corrections: 0,
            literal: 0,
            kept_compressed: None,
            error: None,
        }
    }

    /// Takes the next bytes of the stream as given. Never fails: an error is kept for
    /// [`StreamRecorder::finish`].
    pub fn feed(&mut self, bytes: &[u8]) {
        if matches!(self.state, State::Off) || self.error.is_some() {
            return;
        }
        self.pending.extend_from_slice(bytes);
        if let Err(e) = self.step(false) {
            self.error = Some(e);
        }
    }

    /// Ends the stream: the recipe, or `None` when the stream was not compressed.
    ///
    /// # Errors
    /// Store errors met while recording.
    pub fn finish(mut self) -> Result<Option<RecipeSummary>> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        if matches!(self.state, State::Start | State::Off) {
            return Ok(None);
        }
        self.step(true)?;
        if !self.pending.is_empty() {
            self.keep_rest("the stream ends inside a gzip member")?;
        }
        self.sink.push(&recipe::encode(&RecipeOp::End))?;
        let (content, len) = self.sink.finish()?;
        Ok(Some(RecipeSummary {
            content,
            len,
            corrections: self.corrections,
            literal: self.literal,
            kept_compressed: self.kept_compressed,
        }))
    }

    fn step(&mut self, at_end: bool) -> Result<()> {
        loop {
            let progressed = match &mut self.state {
                State::Start => self.start()?,
                State::Header => self.header(at_end)?,
                State::Deflate(_) => self.deflate(at_end)?,
                State::Trailer => self.trailer(at_end)?,
                State::Literal => {
                    self.literal_all()?;
                    false
                }
                State::Off => false,
            };
            if !progressed {
                return Ok(());
            }
        }
    }

    fn start(&mut self) -> Result<bool> {
        if self.pending.len() < ZSTD_MAGIC.len() {
            return Ok(false);
        }
        self.sink.push(&recipe::recipe_start())?;
        if self.pending.starts_with(&GZIP_MAGIC) {
            self.state = State::Header;
        } else if self.pending.starts_with(&ZSTD_MAGIC) {
            self.kept_compressed = Some("zstd streams are kept as given".into());
            self.state = State::Literal;
        } else {
            self.pending.clear();
            self.state = State::Off;
            return Ok(false);
        }
        Ok(true)
    }

    fn header(&mut self, at_end: bool) -> Result<bool> {
        if self.pending.is_empty() {
            return Ok(false);
        }
        match gzip_header_len(&self.pending) {
            HeaderLen::Complete(n) => {
                let head: Vec<u8> = self.pending.drain(..n).collect();
                self.literal_op(head)?;
                self.sink.push(&recipe::encode(&RecipeOp::Begin))?;
                let config = PreflateConfig {
                    plain_text_limit: MAX_PLAIN as usize,
                    verify_compression: true,
                    ..PreflateConfig::default()
                };
                self.state = State::Deflate(Box::new(PreflateStreamProcessor::new(&config)));
                self.need = PIECE;
                Ok(true)
            }
            HeaderLen::NeedMore if !at_end => Ok(false),
            HeaderLen::NeedMore => self.keep_rest("the stream ends inside a gzip header").map(|()| false),
            HeaderLen::NotGzip => self.keep_rest("bytes after the last gzip member").map(|()| true),
        }
    }

    fn deflate(&mut self, at_end: bool) -> Result<bool> {
        if !at_end && self.pending.len() < self.need {
            return Ok(false);
        }
        let State::Deflate(processor) = &mut self.state else {
            return Ok(false);
        };
        let pending = &self.pending;
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            processor.decompress(pending).map(|r| {
                let plain = processor.plain_text().len() as u64;
                processor.shrink_to_dictionary();
                (r.corrections, r.compressed_size, plain, processor.is_done())
            })
        }));
        match outcome {
            Ok(Ok((_, 0, 0, false))) if !at_end => {
                self.need = self.pending.len().saturating_mul(2);
                Ok(false)
            }
            Ok(Ok((_, 0, 0, false))) => self.keep_rest("preflate made no progress").map(|()| false),
            Ok(Ok((corrections, used, plain, done))) => {
                self.pending.drain(..used.min(self.pending.len()));
                self.corrections += corrections.len() as u64;
                self.sink
                    .push(&recipe::encode(&RecipeOp::Deflate { plain, corrections }))?;
                self.need = PIECE;
                if done {
                    self.state = State::Trailer;
                }
                Ok(true)
            }
            Ok(Err(e)) if e.exit_code() == ExitCode::ShortRead && !at_end && self.pending.len() < MAX_PENDING => {
                self.need = self.pending.len().saturating_mul(2);
                Ok(false)
            }
            Ok(Err(e)) => self
                .keep_rest(&format!(
                    "preflate could not rebuild the deflate data ({:?})",
                    e.exit_code()
                ))
                .map(|()| false),
            Err(_) => self.keep_rest("preflate failed on the deflate data").map(|()| false),
        }
    }

    fn trailer(&mut self, at_end: bool) -> Result<bool> {
        if self.pending.len() >= 8 {
            let tail: Vec<u8> = self.pending.drain(..8).collect();
            self.literal_op(tail)?;
            self.state = State::Header;
            return Ok(true);
        }
        if at_end {
            self.keep_rest("the stream ends inside a gzip trailer")?;
        }
        Ok(false)
    }

    /// Keeps everything from here on as given, recording why.
    fn keep_rest(&mut self, why: &str) -> Result<()> {
        if self.kept_compressed.is_none() {
            self.kept_compressed = Some(why.to_string());
        }
        self.state = State::Literal;
        self.literal_all()
    }

    fn literal_all(&mut self) -> Result<()> {
        let rest = std::mem::take(&mut self.pending);
        for piece in rest.chunks(MAX_LITERAL) {
            self.literal_op(piece.to_vec())?;
        }
        Ok(())
    }

    fn literal_op(&mut self, bytes: Vec<u8>) -> Result<()> {
        self.literal += bytes.len() as u64;
        self.sink.push(&recipe::encode(&RecipeOp::Literal(bytes)))
    }
}

enum HeaderLen {
    Complete(usize),
    NeedMore,
    NotGzip,
}

/// The length of the gzip member header at the start of `buf` (RFC 1952, 2.3.1).
fn gzip_header_len(buf: &[u8]) -> HeaderLen {
    const FHCRC: u8 = 2;
    const FEXTRA: u8 = 4;
    const FNAME: u8 = 8;
    const FCOMMENT: u8 = 16;
    if buf.len() >= 3 && (!buf.starts_with(&GZIP_MAGIC) || buf.get(2) != Some(&8)) {
        return HeaderLen::NotGzip;
    }
    let Some(&flags) = buf.get(3) else {
        return HeaderLen::NeedMore;
    };
    let mut at = 10usize;
    if flags & FEXTRA != 0 {
        let Some(x) = buf.get(at..at + 2).and_then(|x| <[u8; 2]>::try_from(x).ok()) else {
            return HeaderLen::NeedMore;
        };
        at += 2 + usize::from(u16::from_le_bytes(x));
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            match buf.get(at..).and_then(|rest| rest.iter().position(|&b| b == 0)) {
                Some(nul) => at += nul + 1,
                None => return HeaderLen::NeedMore,
            }
        }
    }
    if flags & FHCRC != 0 {
        at += 2;
    }
    if buf.len() < at {
        HeaderLen::NeedMore
    } else {
        HeaderLen::Complete(at)
    }
}

/// Takes the uncompressed stream through [`Write`] and writes the stream as given.
pub struct StreamRebuilder<'r, 'o> {
    ops: OpSource<'r>,
    out: &'o mut dyn Write,
    plain: Vec<u8>,
    waiting: Option<(u64, Vec<u8>)>,
    recreator: Option<RecreateStreamProcessor>,
    ended: bool,
    written: u64,
}

struct OpSource<'r> {
    repo: &'r Repository,
    cursor: ChunkCursor<'r>,
    reader: RecipeReader,
}

impl OpSource<'_> {
    fn next(&mut self) -> Result<Option<RecipeOp>> {
        loop {
            if let Some(op) = self.reader.next_op()? {
                return Ok(Some(op));
            }
            let Some(c) = self.cursor.next_chunk()? else {
                return Ok(None);
            };
            if c.id.is_hole() {
                self.reader.push(&vec![0u8; c.len as usize]);
            } else {
                self.reader.push(&self.repo.read_chunk(c.id)?);
            }
        }
    }
}

fn broken(detail: impl Into<String>) -> Error {
    Error::Corrupt {
        kind: "stream recipe",
        id: String::new(),
        detail: detail.into(),
    }
}

impl<'r, 'o> StreamRebuilder<'r, 'o> {
    /// A rebuilder following `recipe`, writing to `out`.
    pub fn new(repo: &'r Repository, recipe: &Content, out: &'o mut dyn Write) -> Self {
        StreamRebuilder {
            ops: OpSource {
                repo,
                cursor: ChunkCursor::new(repo, recipe),
                reader: RecipeReader::new(),
            },
            out,
            plain: Vec::new(),
            waiting: None,
            recreator: None,
            ended: false,
            written: 0,
        }
    }

    /// Takes uncompressed bytes.
    ///
    /// # Errors
    /// Store, recipe and write errors.
    pub fn take_plain(&mut self, bytes: &[u8]) -> Result<()> {
        if !self.ended {
            self.plain.extend_from_slice(bytes);
        }
        self.advance()
    }

    /// Ends the uncompressed stream; returns the bytes written.
    ///
    /// # Errors
    /// [`Error::Corrupt`] when the recipe wants more plain text than there was or does not end.
    pub fn finish(mut self) -> Result<u64> {
        self.advance()?;
        if !self.ended || self.waiting.is_some() {
            return Err(broken("the recipe wants more uncompressed bytes than the layer has"));
        }
        self.out.flush().map_err(|e| Error::io("layer output", e))?;
        Ok(self.written)
    }

    fn advance(&mut self) -> Result<()> {
        while !self.ended {
            if let Some((n, _)) = &self.waiting {
                let n = usize::try_from(*n).map_err(|_| broken("plain length"))?;
                if self.plain.len() < n {
                    return Ok(());
                }
                let (_, corrections) = self.waiting.take().unwrap_or_default();
                self.deflate(n, &corrections)?;
                continue;
            }
            match self.ops.next()? {
                Some(RecipeOp::Literal(bytes)) => self.emit(&bytes)?,
                Some(RecipeOp::Begin) => self.recreator = Some(RecreateStreamProcessor::new()),
                Some(RecipeOp::Deflate { plain, corrections }) => self.waiting = Some((plain, corrections)),
                Some(RecipeOp::End) => {
                    self.ended = true;
                    self.plain = Vec::new();
                }
                None => return Err(broken("the recipe ends without its END")),
            }
        }
        Ok(())
    }

    fn deflate(&mut self, n: usize, corrections: &[u8]) -> Result<()> {
        let recreator = self.recreator.as_mut().ok_or_else(|| broken("DEFLATE before BEGIN"))?;
        let piece = self.plain.get(..n).unwrap_or_default();
        let rebuilt = catch_unwind(AssertUnwindSafe(|| {
            recreator.recompress(&mut Cursor::new(piece), corrections)
        }));
        let bytes = match rebuilt {
            Ok(Ok((bytes, _))) => bytes,
            Ok(Err(e)) => return Err(broken(format!("preflate could not rebuild: {e:?}"))),
            Err(_) => return Err(broken("preflate failed while rebuilding")),
        };
        self.plain.drain(..n);
        self.emit(&bytes)
    }

    fn emit(&mut self, bytes: &[u8]) -> Result<()> {
        self.written += bytes.len() as u64;
        self.out.write_all(bytes).map_err(|e| Error::io("layer output", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_headers_are_measured_with_their_optional_fields() {
        assert!(matches!(gzip_header_len(&[0x1f, 0x8b]), HeaderLen::NeedMore));
        assert!(matches!(gzip_header_len(&[0x1f, 0x8c, 8]), HeaderLen::NotGzip));
        let plain = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xaa];
        assert!(matches!(gzip_header_len(&plain), HeaderLen::Complete(10)));
        let named = [0x1f, 0x8b, 8, 8, 0, 0, 0, 0, 0, 3, b'a', b'b', 0, 0xaa];
        assert!(matches!(gzip_header_len(&named), HeaderLen::Complete(13)));
        assert!(matches!(gzip_header_len(&named[..12]), HeaderLen::NeedMore));
        let extra = [0x1f, 0x8b, 8, 4 | 2, 0, 0, 0, 0, 0, 3, 2, 0, 7, 7, 1, 1];
        assert!(matches!(gzip_header_len(&extra), HeaderLen::Complete(16)));
    }
}
