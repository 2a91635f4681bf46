//! Container layers: tar streams (plain, gzip or zstd) stored file-aware — each member's
//! data chunked on its own, so it deduplicates with the same file in trees and other
//! layers — plus a layout (headers, long-name records, padding, end blocks) that rebuilds
//! the uncompressed stream byte for byte. The SHA-256 of that stream (the layer's diff id)
//! is checked on every rebuild.

use std::cell::RefCell;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use ring::digest::{Context, SHA256};

use crate::error::{Error, Result};
use crate::format::blob::BlobKind;
use crate::format::layout::{self, LayoutReader, Record};
use crate::format::snapshot::{Snapshot, SnapshotStats, SourceKind};
use crate::format::tarhdr::{self, BLOCK, MAX_META_RECORD, TarKind};
use crate::format::tree::{Content, Entry, EntryKind, TreeNode};
use crate::id::{BlobId, SnapshotId, TreeId};
use crate::ops::Labels;
use crate::ops::content::ChunkCursor;
use crate::ops::progress::Progress;
use crate::ops::regzip::{RecipeSummary, StreamRebuilder, StreamRecorder};
use crate::ops::stream::{ContentSink, StreamError, store_stream};
use crate::repo::Repository;
use crate::repo::writer::{BlobWriter, WriteStats};

/// Metadata key holding a layer's diff id (`sha256:<hex>` of the uncompressed stream).
pub const DIFF_ID_KEY: &str = "oci.diff_id";
/// Metadata key holding the digest of the stream as it was given (compressed or not).
pub const DIGEST_KEY: &str = "oci.digest";
/// Metadata key holding the compression detected (`none`, `gzip`, `zstd`).
pub const COMPRESSION_KEY: &str = "oci.compression";
/// Name of the entry at the root of a layer snapshot whose content is the layout.
pub const LAYOUT_ENTRY: &[u8] = b"layer.tar";
/// Name of the entry beside it, in a layer given compressed, whose content is the recipe
/// that rebuilds the stream as given ([`crate::format::recipe`]).
pub const RECIPE_ENTRY: &[u8] = b"stream.recipe";

/// What to record with a layer snapshot.
#[derive(Clone, Debug, Default)]
pub struct TarOptions {
    /// What the snapshot records about itself.
    pub labels: Labels,
    /// Live counters.
    pub progress: Option<Arc<Progress>>,
    /// Refuse members (and hard-link targets) whose path is absolute or climbs out of the
    /// root with `..`, as a server must for layers it did not build itself.
    pub confine_paths: bool,
}

/// What a layer snapshot did.
#[derive(Clone, Debug)]
pub struct TarSummary {
    /// The snapshot (an existing one when the layer was already stored).
    pub id: SnapshotId,
    /// Its object.
    pub snapshot: Snapshot,
    /// The vault already held a layer with this diff id; nothing new was committed.
    pub already_stored: bool,
    /// Members (not counting PAX and GNU long-name records).
    pub members: u64,
    /// Uncompressed bytes.
    pub size: u64,
    /// Bytes as given.
    pub input_size: u64,
    /// `sha256:<hex>` of the uncompressed stream.
    pub diff_id: String,
    /// `sha256:<hex>` of the stream as given.
    pub digest: String,
    /// `none`, `gzip` or `zstd`.
    pub compression: &'static str,
    /// How the stream as given is rebuilt (`None`: it was not compressed).
    pub recipe: Option<RecipeSummary>,
    /// What the store grew by.
    pub written: WriteStats,
}

/// SHA-256 and length of what passes through.
#[derive(Clone)]
struct Tally(Arc<Mutex<(Context, u64)>>);

impl Tally {
    fn new() -> Self {
        Tally(Arc::new(Mutex::new((Context::new(&SHA256), 0))))
    }
    fn add(&self, bytes: &[u8]) {
        if let Ok(mut t) = self.0.lock() {
            t.0.update(bytes);
            t.1 += bytes.len() as u64;
        }
    }
    fn finish(&self) -> (String, u64) {
        match self.0.lock() {
            Ok(t) => (format!("sha256:{}", hex::encode(t.0.clone().finish().as_ref())), t.1),
            Err(_) => (String::new(), 0),
        }
    }
}

struct Tallied<R> {
    inner: R,
    tally: Tally,
}

impl<R: Read> Read for Tallied<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.tally.add(buf.get(..n).unwrap_or_default());
        Ok(n)
    }
}

/// Detects gzip or zstd from the first bytes and returns a reader of the plain stream.
fn decompressed<'a>(input: impl Read + 'a) -> Result<(Box<dyn Read + 'a>, &'static str)> {
    let mut buffered = BufReader::with_capacity(256 * 1024, input);
    let head = buffered.fill_buf().map_err(|e| Error::io("tar input", e))?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok((Box::new(flate2::read::MultiGzDecoder::new(buffered)), "gzip"))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        let dec = zstd::stream::read::Decoder::with_buffer(buffered).map_err(|e| Error::io("tar input", e))?;
        Ok((Box::new(dec), "zstd"))
    } else {
        Ok((Box::new(buffered), "none"))
    }
}

fn bad_tar(offset: u64, detail: impl std::fmt::Display) -> Error {
    Error::InvalidArgument(format!("malformed tar at byte {offset}: {detail}"))
}

/// Reads until `buf` is full or the stream ends; returns how much was read.
fn read_full(src: &mut dyn Read, buf: &mut [u8]) -> Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match src.read(buf.get_mut(got..).unwrap_or_default()) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::InvalidArgument(format!("cannot read the tar stream: {e}"))),
        }
    }
    Ok(got)
}

/// Snapshots one layer read from `input`. A failed or malformed stream leaves no snapshot.
///
/// # Errors
/// [`Error::InvalidArgument`] for malformed input (truncated, bad checksum, a member larger
/// than the stream); store errors.
pub fn snapshot_tar(
    repo: &Repository,
    input: &mut dyn Read,
    source_name: &str,
    opts: &TarOptions,
) -> Result<TarSummary> {
    if let Some((k, _)) = opts.labels.metadata.iter().find(|(k, _)| k.starts_with("oci.")) {
        return Err(Error::InvalidArgument(format!(
            "metadata key {k:?}: keys starting with \"oci.\" are reserved"
        )));
    }
    let writer = BlobWriter::new(repo)?;
    let recorder = Rc::new(RefCell::new(StreamRecorder::new(&writer)));
    let raw_tally = Tally::new();
    let plain_tally = Tally::new();
    let recording = Recording {
        inner: input,
        recorder: Rc::clone(&recorder),
    };
    let (plain, compression) = decompressed(Tallied {
        inner: recording,
        tally: raw_tally.clone(),
    })?;
    let mut src = Tallied {
        inner: plain,
        tally: plain_tally.clone(),
    };
    let progress = opts.progress.clone().unwrap_or_default();
    let guard = opts.confine_paths.then(PathGuard::default);
    let (layout, members) = ingest_stream(&writer, &mut src, &progress, guard)?;
    drop(src);
    let recipe = Rc::try_unwrap(recorder)
        .map_err(|_| Error::Pipeline("the stream recorder is still in use".into()))?
        .into_inner()
        .finish()?;
    let (diff_id, size) = plain_tally.finish();
    let (digest, input_size) = raw_tally.finish();
    let existing = repo.snapshots()?.into_iter().find(|(_, s)| {
        s.source == SourceKind::TarLayer
            && recorded_diff_id(s) == Some(diff_id.as_str())
            && recorded(s, DIGEST_KEY) == Some(digest.as_str())
    });
    let root = writer.store_meta(BlobKind::Tree, &layer_root(layout, size, recipe.as_ref())?.encode())?;
    let written = writer.finish()?;
    let summary = |id, snapshot, already_stored| TarSummary {
        id,
        snapshot,
        already_stored,
        members,
        size,
        input_size,
        diff_id: diff_id.clone(),
        digest: digest.clone(),
        compression,
        recipe: recipe.clone(),
        written,
    };
    if let Some((id, snap)) = existing {
        return Ok(summary(id, snap, true));
    }
    let mut labels = opts.labels.clone();
    labels.metadata.push((DIFF_ID_KEY.into(), diff_id.clone()));
    labels.metadata.push((DIGEST_KEY.into(), digest.clone()));
    labels.metadata.push((COMPRESSION_KEY.into(), compression.into()));
    let stats = SnapshotStats {
        files: members,
        dirs: 0,
        bytes: size,
        bytes_new: written.bytes_new,
        blobs_new: written.blobs_new,
    };
    let snapshot = labels.snapshot(SourceKind::TarLayer, root, None, source_name.to_string(), stats);
    let id = repo.commit_snapshot(&snapshot)?;
    Ok(summary(id, snapshot, false))
}

/// The root node of a layer snapshot: the layout, and the recipe of a compressed stream.
fn layer_root(layout: Content, size: u64, recipe: Option<&RecipeSummary>) -> Result<TreeNode> {
    let mut entry = Entry::new(LAYOUT_ENTRY.to_vec(), EntryKind::File);
    entry.size = size;
    entry.mode = 0o644;
    entry.content = layout;
    let mut entries = vec![entry];
    if let Some(r) = recipe {
        let mut e = Entry::new(RECIPE_ENTRY.to_vec(), EntryKind::File);
        e.size = r.len;
        e.mode = 0o644;
        e.content = r.content.clone();
        entries.push(e);
    }
    Ok(TreeNode::new(entries)?)
}

/// Passes the stream as given to the recorder of its recipe.
struct Recording<'w, R> {
    inner: R,
    recorder: Rc<RefCell<StreamRecorder<'w>>>,
}

impl<R: Read> Read for Recording<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.recorder.borrow_mut().feed(buf.get(..n).unwrap_or_default());
        Ok(n)
    }
}

/// Parses the stream, storing member data as content and everything else in the layout.
fn ingest_stream(
    writer: &BlobWriter,
    src: &mut dyn Read,
    progress: &Progress,
    mut guard: Option<PathGuard>,
) -> Result<(Content, u64)> {
    let mut layout = ContentSink::new(writer, BlobKind::Layout);
    layout.push(&layout::layout_start())?;
    let mut offset = 0u64;
    let mut members = 0u64;
    // A PAX `size` overrides the next member's header field (members of 8 GiB and more).
    let mut pax_size: Option<u64> = None;
    loop {
        let mut block = Box::new([0u8; BLOCK]);
        let got = read_full(src, &mut block[..])?;
        if got == 0 {
            break; // No end-of-archive blocks: rebuilt exactly as given.
        }
        if got < BLOCK {
            return Err(bad_tar(offset, format!("the stream ends {got} bytes into a header")));
        }
        if tarhdr::is_zero_block(&block[..]) {
            let tail = store_tail(writer, &block[..], src, progress)?;
            layout.push(&layout::encode(&tail))?;
            break;
        }
        let mut header = tarhdr::parse_header(&block).map_err(|e| bad_tar(offset, e))?;
        if !header.kind.is_meta() {
            header.size = pax_size.take().unwrap_or(header.size);
        }
        offset += BLOCK as u64;
        layout.push(&layout::encode(&Record::Header(block)))?;
        let data = if header.kind.is_meta() {
            if header.size > MAX_META_RECORD {
                return Err(bad_tar(offset, format!("a {} byte extended header", header.size)));
            }
            let mut buf = vec![0u8; usize::try_from(header.size).unwrap_or(0)];
            let got = read_full(src, &mut buf)?;
            if got < buf.len() {
                return Err(bad_tar(offset, "the stream ends inside an extended header"));
            }
            if let Some(g) = guard.as_mut() {
                g.note_meta(header.kind, &buf).map_err(|e| bad_tar(offset, e))?;
            }
            if header.kind == TarKind::PaxLocal {
                pax_size = tarhdr::pax_size(&buf).or(pax_size);
            }
            Record::Raw(buf)
        } else {
            if let Some(g) = guard.as_mut() {
                g.check_member(&header).map_err(|e| bad_tar(offset, e))?;
            }
            members += 1;
            let (content, got) = store_stream(writer, src, header.size, progress).map_err(|e| match e {
                StreamError::Source(io) => Error::InvalidArgument(format!("cannot read the tar stream: {io}")),
                StreamError::Engine(e) => e,
            })?;
            if got < header.size {
                let name = String::from_utf8_lossy(&header.name);
                return Err(bad_tar(
                    offset,
                    format!(
                        "member {name:?} claims {} bytes but the stream ends after {got}",
                        header.size
                    ),
                ));
            }
            Record::Member {
                size: header.size,
                content,
            }
        };
        offset += header.size;
        layout.push(&layout::encode(&data))?;
        let pad = tarhdr::padding(header.size);
        let mut padding = vec![0u8; pad as usize];
        if read_full(src, &mut padding)? < padding.len() {
            return Err(bad_tar(offset, "the stream ends inside padding"));
        }
        offset += pad;
        if pad > 0 {
            let rec = if padding.iter().all(|&b| b == 0) {
                Record::Zeros(pad as u32)
            } else {
                Record::Raw(padding)
            };
            layout.push(&layout::encode(&rec))?;
        }
    }
    layout.push(&layout::encode(&Record::End))?;
    Ok((layout.finish()?.0, members))
}

/// Tracks the effective path of the next member (PAX and GNU long-name records override
/// the header's) and refuses paths that leave the root.
#[derive(Default)]
struct PathGuard {
    name: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
}

impl PathGuard {
    fn note_meta(&mut self, kind: TarKind, data: &[u8]) -> std::result::Result<(), String> {
        let trimmed = |d: &[u8]| d.split(|&b| b == 0).next().unwrap_or_default().to_vec();
        match kind {
            TarKind::GnuLongName => self.name = Some(trimmed(data)),
            TarKind::GnuLongLink => self.link = Some(trimmed(data)),
            TarKind::PaxLocal | TarKind::PaxGlobal => {
                for (k, v) in tarhdr::parse_pax(data).map_err(|e| e.to_string())? {
                    match k.as_slice() {
                        b"path" => self.name = Some(v),
                        b"linkpath" => self.link = Some(v),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn check_member(&mut self, header: &tarhdr::TarHeader) -> std::result::Result<(), String> {
        let name = self.name.take().unwrap_or_else(|| header.name.clone());
        let link = self.link.take().unwrap_or_else(|| header.link.clone());
        confined(&name)?;
        if header.kind == TarKind::HardLink {
            confined(&link)?;
        }
        Ok(())
    }
}

/// Refuses an absolute path or one with a `..` component.
fn confined(path: &[u8]) -> std::result::Result<(), String> {
    let shown = || String::from_utf8_lossy(path).into_owned();
    if path.first() == Some(&b'/') {
        return Err(format!("member path {:?} is absolute", shown()));
    }
    if path.split(|&b| b == b'/').any(|c| c == b"..") {
        return Err(format!("member path {:?} leaves the root", shown()));
    }
    Ok(())
}

/// The first end-of-archive block and everything after it, stored as one content.
fn store_tail(writer: &BlobWriter, first: &[u8], src: &mut dyn Read, progress: &Progress) -> Result<Record> {
    let mut chained = first.chain(src);
    let (content, size) = store_stream(writer, &mut chained, u64::MAX, progress).map_err(|e| match e {
        StreamError::Source(io) => Error::InvalidArgument(format!("cannot read the tar stream: {io}")),
        StreamError::Engine(e) => e,
    })?;
    Ok(Record::Tail { size, content })
}

/// The layout content of a layer snapshot.
///
/// # Errors
/// [`Error::InvalidArgument`] when the snapshot is not a layer.
pub fn layer_layout(repo: &Repository, id: SnapshotId, snap: &Snapshot) -> Result<Content> {
    if snap.source != SourceKind::TarLayer {
        return Err(Error::InvalidArgument(format!(
            "snapshot {id} is a {} snapshot, not a tar layer",
            snap.source.name()
        )));
    }
    let node = repo.load_tree(TreeId::new(snap.root))?;
    node.get(LAYOUT_ENTRY)
        .map(|e| e.content.clone())
        .ok_or_else(|| Error::Corrupt {
            kind: "tree",
            id: snap.root.to_hex(),
            detail: "layer snapshot without its layout".into(),
        })
}

/// The diff id recorded with a layer snapshot.
pub fn recorded_diff_id(snap: &Snapshot) -> Option<&str> {
    recorded(snap, DIFF_ID_KEY)
}

/// The value of one metadata key.
pub fn recorded<'s>(snap: &'s Snapshot, key: &str) -> Option<&'s str> {
    snap.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Whether layer snapshot `id` may be reused as it is held, instead of its stream being
/// stored again: every blob it names is indexed, in no archived or condemned pack, and not
/// marked damaged. A layer partly cold or damaged is taken in again, which stores what is
/// missing anew (hot), so a new image or environment never leans on it.
///
/// # Errors
/// Index errors. Metadata that does not read answers `false`.
pub fn held_whole(repo: &Repository, id: SnapshotId, snap: &Snapshot) -> Result<bool> {
    let Ok(live) = crate::ops::live::live_blobs(repo, &[(id, snap.clone())]) else {
        return Ok(false);
    };
    for blob in &live.blobs {
        if !repo.index().holds_good(blob)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Visits the layout's records in order.
///
/// # Errors
/// Store and corruption errors, or what `visit` returns.
pub fn for_each_record(repo: &Repository, layout: &Content, visit: &mut dyn FnMut(Record) -> Result<()>) -> Result<()> {
    let mut cursor = ChunkCursor::new(repo, layout);
    let mut reader = LayoutReader::new();
    let mut ended = false;
    while let Some(c) = cursor.next_chunk()? {
        reader.push(&repo.read_blob(BlobId::new(*c.id.hash()), BlobKind::Layout)?);
        while let Some(rec) = reader.next_record()? {
            ended = rec == Record::End;
            visit(rec)?;
        }
    }
    if !ended || !reader.is_drained() {
        return Err(Error::Corrupt {
            kind: "tar layout",
            id: String::new(),
            detail: "the layout ends early".into(),
        });
    }
    Ok(())
}

/// Writes the content's bytes to `out`, verifying every chunk.
///
/// # Errors
/// Store, corruption and write errors.
pub fn write_content(repo: &Repository, content: &Content, out: &mut dyn Write) -> Result<u64> {
    let mut written = 0u64;
    crate::ops::content::for_each_chunk(repo, content, &mut |c| {
        let data = if c.id.is_hole() {
            vec![0u8; c.len as usize]
        } else {
            repo.read_chunk(c.id)?
        };
        out.write_all(&data).map_err(|e| Error::io("tar output", e))?;
        written += data.len() as u64;
        Ok(())
    })?;
    Ok(written)
}

/// What rebuilds one layer: its root node and what it must prove.
#[derive(Clone, Debug)]
pub struct LayerRef {
    /// The layer's root node (`layer.tar`, and `stream.recipe` when given compressed).
    pub root: TreeId,
    /// `sha256:<hex>` of the uncompressed stream.
    pub diff_id: String,
    /// `sha256:<hex>` of the stream as given.
    pub digest: String,
    /// `none`, `gzip` or `zstd`.
    pub compression: String,
    /// How errors name it (a snapshot id, or a blob of an image).
    pub name: String,
}

impl LayerRef {
    /// The layer of a layer snapshot.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the snapshot is not a layer.
    pub fn of_snapshot(id: SnapshotId, snap: &Snapshot) -> Result<Self> {
        if snap.source != SourceKind::TarLayer {
            return Err(Error::InvalidArgument(format!(
                "snapshot {id} is a {} snapshot, not a tar layer",
                snap.source.name()
            )));
        }
        Ok(LayerRef {
            root: TreeId::new(snap.root),
            diff_id: recorded_diff_id(snap).unwrap_or_default().to_string(),
            digest: recorded(snap, DIGEST_KEY).unwrap_or_default().to_string(),
            compression: recorded(snap, COMPRESSION_KEY).unwrap_or("none").to_string(),
            name: id.to_hex(),
        })
    }
}

/// Rebuilds the layer's uncompressed tar stream into `out` and checks its SHA-256 against
/// the recorded diff id.
///
/// # Errors
/// [`Error::Corrupt`] when the rebuilt stream does not match; store and write errors.
pub fn restore_tar(repo: &Repository, id: SnapshotId, out: &mut dyn Write) -> Result<u64> {
    let snap = repo.load_snapshot(id)?;
    rebuild_layer_plain(repo, &LayerRef::of_snapshot(id, &snap)?, out)
}

/// Rebuilds the layer's stream exactly as it was given (gzip, zstd or plain) into `out`.
///
/// # Errors
/// As [`rebuild_layer_as_given`].
pub fn restore_layer_as_given(repo: &Repository, id: SnapshotId, out: &mut dyn Write) -> Result<u64> {
    let snap = repo.load_snapshot(id)?;
    rebuild_layer_as_given(repo, &LayerRef::of_snapshot(id, &snap)?, out)
}

/// Rebuilds a layer's stream exactly as it was given into `out`, checking the uncompressed
/// stream against the diff id and the result against the digest.
///
/// # Errors
/// [`Error::InvalidArgument`] for a compressed layer stored without a recipe (before
/// recipes existed); [`Error::Corrupt`] when either digest does not match; store and write
/// errors.
pub fn rebuild_layer_as_given(repo: &Repository, layer: &LayerRef, out: &mut dyn Write) -> Result<u64> {
    let node = repo.load_tree(layer.root)?;
    let Some(recipe) = node.get(RECIPE_ENTRY) else {
        return match layer.compression.as_str() {
            "none" => rebuild_layer_plain(repo, layer, out),
            other => Err(Error::InvalidArgument(format!(
                "layer {} was given {other}-compressed and stored without a recipe for that stream; \
                 only its uncompressed stream can be restored",
                layer.name
            ))),
        };
    };
    let tally = Tally::new();
    let mut given = TallyWriter {
        inner: out,
        tally: tally.clone(),
    };
    let mut plain = PlainFeed {
        rebuilder: StreamRebuilder::new(repo, &recipe.content, &mut given),
        error: None,
    };
    let outcome = rebuild_layer_plain(repo, layer, &mut plain);
    if let Some(e) = plain.error.take() {
        return Err(e);
    }
    outcome?;
    let size = plain.rebuilder.finish()?;
    let (digest, _) = tally.finish();
    if digest == layer.digest {
        Ok(size)
    } else {
        Err(Error::Corrupt {
            kind: "tar layer",
            id: layer.name.clone(),
            detail: format!(
                "rebuilt {} stream has {digest}, the layer records {}",
                layer.compression, layer.digest
            ),
        })
    }
}

/// Writes the uncompressed stream of a layer into `out`, checking it against the diff id.
///
/// # Errors
/// [`Error::Corrupt`] when the rebuilt stream does not match; store and write errors.
pub fn rebuild_layer_plain(repo: &Repository, layer: &LayerRef, out: &mut dyn Write) -> Result<u64> {
    let node = repo.load_tree(layer.root)?;
    let layout = node
        .get(LAYOUT_ENTRY)
        .map(|e| e.content.clone())
        .ok_or_else(|| Error::Corrupt {
            kind: "tree",
            id: layer.root.to_hex(),
            detail: "layer without its layout".into(),
        })?;
    let tally = Tally::new();
    let mut sink = TallyWriter {
        inner: out,
        tally: tally.clone(),
    };
    for_each_record(repo, &layout, &mut |rec| emit(repo, rec, &mut sink))?;
    sink.flush().map_err(|e| Error::io("tar output", e))?;
    let (digest, size) = tally.finish();
    if digest == layer.diff_id {
        Ok(size)
    } else {
        Err(Error::Corrupt {
            kind: "tar layer",
            id: layer.name.clone(),
            detail: format!("rebuilt stream has {digest}, the layer records {}", layer.diff_id),
        })
    }
}

/// Feeds the uncompressed stream to a rebuilder, keeping its error whole.
struct PlainFeed<'r, 'o> {
    rebuilder: StreamRebuilder<'r, 'o>,
    error: Option<Error>,
}

impl Write for PlainFeed<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.rebuilder.take_plain(buf) {
            Ok(()) => Ok(buf.len()),
            Err(e) => {
                let shown = std::io::Error::other(e.to_string());
                self.error = Some(e);
                Err(shown)
            }
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn emit(repo: &Repository, rec: Record, out: &mut dyn Write) -> Result<()> {
    let io = |e| Error::io("tar output", e);
    match rec {
        Record::Header(block) => out.write_all(&block[..]).map_err(io),
        Record::Raw(bytes) => out.write_all(&bytes).map_err(io),
        Record::Zeros(n) => out.write_all(&vec![0u8; n as usize]).map_err(io),
        Record::Member { size, content } | Record::Tail { size, content } => {
            let n = write_content(repo, &content, out)?;
            if n == size {
                Ok(())
            } else {
                Err(Error::Corrupt {
                    kind: "tar member",
                    id: String::new(),
                    detail: format!("{n} bytes where {size} were recorded"),
                })
            }
        }
        Record::End => Ok(()),
    }
}

struct TallyWriter<'a> {
    inner: &'a mut dyn Write,
    tally: Tally,
}

impl Write for TallyWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.tally.add(buf.get(..n).unwrap_or_default());
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
