//! Assembling a tree snapshot from entries pushed in depth-first pre-order (a server
//! receiving a tree over the network), without reading any file system.
//!
//! Entries are numbered 1, 2, 3… in the order they are added; the root directory is 0.
//! Each entry names the open directory it belongs to. Regular files that match the
//! parent snapshot's entry at the same path (or a file completed by an earlier, failed
//! attempt) take its content; the others are *wanted*, and their content is pushed later,
//! one file at a time, in increasing index order. A directory is stored once it is closed
//! and all its files have arrived, children before parents, so memory holds only the open
//! directories and those still waiting for files, never the whole tree.
//!
//! ```text
//! add(0, dir "a") -> 1      add(1, file "x") -> 2 (wanted)      add(0, file "b") -> 3
//! begin_file(2); file_data(..); end_file(2, size)               finish()
//! ```

use std::collections::{BTreeMap, HashMap};

use crate::error::{Error, Result};
use crate::format::blob::BlobKind;
use crate::format::snapshot::{Snapshot, SnapshotStats, SourceKind};
use crate::format::tree::{Content, Entry, EntryKind, MAX_XATTR_VALUE, TreeNode};
use crate::id::{BlobId, SnapshotId, TreeId};
use crate::ops::ingest::reusable;
use crate::ops::stream::ContentSink;
use crate::ops::{Labels, display_path, join_rel};
use crate::repo::Repository;
use crate::repo::writer::{BlobWriter, WriteStats};

/// Deepest directory nesting accepted.
pub const MAX_DEPTH: usize = 4096;
/// Most bytes of entries one directory may hold (its node must fit one blob).
pub const MAX_DIR_BYTES: u64 = 64 * 1024 * 1024;
/// Most bytes of entries held in memory at once, over every directory not yet stored.
pub const MAX_HELD_BYTES: u64 = 256 * 1024 * 1024;
/// Skipped paths kept with their reasons; beyond this they are only counted.
pub const MAX_KEPT_SKIPS: usize = 10_000;
/// Longest entry name accepted, in bytes.
pub const MAX_NAME: usize = u16::MAX as usize;

/// What became of an added entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Added {
    /// A regular file whose content was taken from the parent snapshot or an earlier
    /// attempt (or an empty file): no content is needed.
    Reused,
    /// A regular file whose content must be sent, under this index.
    Wanted(u64),
    /// A directory, symlink or special file: nothing to send.
    Other,
}

/// What [`TreeAssembler::finish`] assembled.
#[derive(Clone, Debug, Default)]
pub struct AssembledTree {
    /// The root tree node.
    pub root: TreeId,
    /// Regular files.
    pub files: u64,
    /// Directories below the root.
    pub dirs: u64,
    /// Bytes of file content.
    pub bytes: u64,
    /// Non-empty files whose content was taken from the parent snapshot or an earlier
    /// attempt.
    pub files_reused: u64,
    /// Empty regular files (nothing to send or reuse).
    pub files_empty: u64,
    /// Files whose content was sent.
    pub files_sent: u64,
    /// Bytes of file content sent.
    pub bytes_received: u64,
    /// Paths left out, with the reason (the first [`MAX_KEPT_SKIPS`]).
    pub skipped: Vec<(String, String)>,
    /// Paths left out beyond those.
    pub skipped_beyond: u64,
    /// Metadata of the pushed directory itself, recorded as the snapshot's root entry.
    pub root_entry: Option<Entry>,
}

impl AssembledTree {
    /// Commits a tree snapshot of this tree. `written` is what the writer stored (from
    /// [`BlobWriter::finish`], or [`BlobWriter::flush`] then [`BlobWriter::stats`]); call
    /// it only once every blob is durable.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for labels that do not fit; store errors.
    pub fn commit(
        &self,
        repo: &Repository,
        labels: &Labels,
        parent: Option<SnapshotId>,
        source_path: String,
        written: &WriteStats,
    ) -> Result<(SnapshotId, Snapshot)> {
        let stats = SnapshotStats {
            files: self.files,
            dirs: self.dirs,
            bytes: self.bytes,
            bytes_new: written.bytes_new,
            blobs_new: written.blobs_new,
        };
        let mut snapshot = labels.snapshot(SourceKind::Tree, *self.root.hash(), parent, source_path, stats);
        snapshot.root_entry = self.root_entry.clone().map(|mut e| {
            e.name = Vec::new();
            e.kind = EntryKind::Dir;
            e.content = Content::Tree(self.root);
            e
        });
        snapshot.record_skips(&self.skipped);
        snapshot.skipped += self.skipped_beyond;
        let id = repo.commit_snapshot(&snapshot)?;
        Ok((id, snapshot))
    }
}

/// A directory that is open, or closed but waiting for some of its files.
struct Dir {
    /// The directory holding this one and this one's slot there (`None` for the root).
    up: Option<(u64, usize)>,
    /// Relative path, raw names joined by `/`; empty for the root.
    path: Vec<u8>,
    /// Entries in name order; `None` for a file that failed.
    entries: Vec<Option<Entry>>,
    /// The last name added.
    last_name: Option<Vec<u8>>,
    /// Wanted files and subdirectories not stored yet.
    outstanding: usize,
    closed: bool,
    /// The parent snapshot's node for this path: its id until first needed, then loaded.
    previous: Previous,
    /// Estimated encoded size of `entries`.
    bytes: u64,
}

enum Previous {
    None,
    Unloaded(TreeId),
    Loaded(TreeNode),
}

/// A wanted file not received yet.
struct Wanted {
    dir: u64,
    slot: usize,
    path: Vec<u8>,
    /// The size its entry declared: the most content it may receive.
    declared: u64,
}

/// The file whose content is arriving.
struct Receiving<'w> {
    index: u64,
    sink: ContentSink<'w>,
    declared: u64,
    received: u64,
}

/// Zero bytes handed to the chunker at once for a run of zeros.
const ZEROS_PIECE: usize = 1 << 20;

/// Assembles a tree from pushed entries and file contents; see the module documentation.
pub struct TreeAssembler<'w> {
    writer: &'w BlobWriter,
    /// Directories open or waiting, by index.
    dirs: HashMap<u64, Dir>,
    /// The open directories, root first.
    chain: Vec<u64>,
    /// Wanted files not received yet, by index.
    wanted: BTreeMap<u64, Wanted>,
    receiving: Option<Receiving<'w>>,
    resumed: HashMap<Vec<u8>, Entry>,
    completed: Vec<(Vec<u8>, Entry)>,
    next_index: u64,
    root: Option<TreeId>,
    out: AssembledTree,
    /// Estimated bytes of entries held in directories not yet stored.
    held: u64,
}

impl<'w> TreeAssembler<'w> {
    /// An assembler storing through `writer`, comparing files with the tree `parent_root`
    /// (the parent snapshot's root) when given.
    ///
    /// # Errors
    /// Errors loading the parent's root node.
    pub fn new(writer: &'w BlobWriter, parent_root: Option<TreeId>) -> Result<Self> {
        let previous = match parent_root {
            Some(id) => Previous::Loaded(writer.repo().load_tree(id)?),
            None => Previous::None,
        };
        let root = Dir {
            up: None,
            path: Vec::new(),
            entries: Vec::new(),
            last_name: None,
            outstanding: 0,
            closed: false,
            previous,
            bytes: 0,
        };
        Ok(TreeAssembler {
            writer,
            dirs: HashMap::from([(0, root)]),
            chain: vec![0],
            wanted: BTreeMap::new(),
            receiving: None,
            resumed: HashMap::new(),
            completed: Vec::new(),
            next_index: 1,
            root: None,
            out: AssembledTree::default(),
            held: 0,
        })
    }

    /// File entries (with content) completed by an earlier, failed attempt, keyed by
    /// relative path: an unchanged file at the same path takes its content, as from the
    /// parent snapshot.
    #[must_use]
    pub fn with_resumed(mut self, files: HashMap<Vec<u8>, Entry>) -> Self {
        self.resumed = files;
        self
    }

    /// Adds `entry` under the open directory `parent` (0: the root) and returns what
    /// became of it; its index is the number of entries added before it, plus one.
    /// Adding under a directory closes the directories opened after it. The entry's
    /// content is ignored: it is taken from the parent, sent later, or built here.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when `parent` is not an open directory, the name is not
    /// valid or not after the previous name in the directory, a field does not fit the
    /// format, or directories nest deeper than [`MAX_DEPTH`]; store errors.
    pub fn add(&mut self, parent: u64, mut entry: Entry) -> Result<Added> {
        let depth = self.open_depth(parent)?;
        let held = self.held;
        let dir = self.dir_mut(parent)?;
        let path = join_rel(&dir.path, &entry.name);
        let shown = display_path(&path);
        check_entry(&entry, &shown)?;
        if dir.last_name.as_ref().is_some_and(|last| *last >= entry.name) {
            return Err(Error::InvalidArgument(format!(
                "{shown}: names in a directory must be added in strictly increasing byte order"
            )));
        }
        if entry.kind == EntryKind::Dir && depth >= MAX_DEPTH {
            return Err(Error::InvalidArgument(format!(
                "{shown}: directories nest deeper than {MAX_DEPTH} levels"
            )));
        }
        let size = entry_bytes(&entry);
        if dir.bytes + size > MAX_DIR_BYTES || held + size > MAX_HELD_BYTES {
            return Err(Error::LimitExceeded(format!(
                "{shown}: a directory holds at most {MAX_DIR_BYTES} bytes of entries, and a push at most \
                 {MAX_HELD_BYTES} bytes of entries of directories not yet complete"
            )));
        }
        dir.bytes += size;
        dir.last_name = Some(entry.name.clone());
        self.held += size;
        self.close_above(parent)?;
        let index = self.next_index;
        self.next_index += 1;
        entry.content = Content::None;
        let previous = self.previous_entry(parent, &entry.name)?;
        match entry.kind {
            EntryKind::Dir => self.open_dir(parent, index, path, entry, previous),
            EntryKind::File => self.add_file(parent, index, path, entry, previous),
            _ => {
                self.dir_mut(parent)?.entries.push(Some(entry));
                Ok(Added::Other)
            }
        }
    }

    /// Records the metadata of the pushed directory itself (its name is ignored), to be
    /// the snapshot's root entry.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when a field would not encode faithfully.
    pub fn set_root_entry(&mut self, mut entry: Entry) -> Result<()> {
        entry.name = b"root".to_vec();
        check_entry(&entry, "the root")?;
        self.out.root_entry = Some(entry);
        Ok(())
    }

    /// Records a path the client could not read.
    pub fn skip(&mut self, path: String, reason: String) {
        if self.out.skipped.len() < MAX_KEPT_SKIPS {
            self.out.skipped.push((path, reason));
        } else {
            self.out.skipped_beyond += 1;
        }
    }

    /// Starts receiving the content of wanted file `index`, which must be the first
    /// wanted file not received yet.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when another file is being received or `index` is not
    /// the next wanted file.
    pub fn begin_file(&mut self, index: u64) -> Result<()> {
        if let Some(r) = &self.receiving {
            return Err(Error::InvalidArgument(format!(
                "file {index} begun while file {} is still being received",
                r.index
            )));
        }
        let next = self.wanted.first_key_value().map(|(i, _)| *i);
        if next != Some(index) {
            let expected = next.map_or_else(|| "none is pending".to_string(), |i| format!("file {i} is next"));
            return Err(Error::InvalidArgument(format!(
                "file {index} is not the next wanted file: {expected}"
            )));
        }
        let declared = self.wanted.get(&index).map_or(0, |w| w.declared);
        self.receiving = Some(Receiving {
            index,
            sink: ContentSink::new(self.writer, BlobKind::Chunk),
            declared,
            received: 0,
        });
        Ok(())
    }

    /// The file being received, after checking that `more` bytes still fit its declared size.
    fn receiving_room(&mut self, more: u64) -> Result<&mut Receiving<'w>> {
        let r = self
            .receiving
            .as_mut()
            .ok_or_else(|| Error::InvalidArgument("file data sent before any file was begun".into()))?;
        if r.received.saturating_add(more) > r.declared {
            return Err(Error::InvalidArgument(format!(
                "file {}: more than the {} bytes its entry declared (send a file that grew only up to that size)",
                r.index, r.declared
            )));
        }
        r.received += more;
        Ok(r)
    }

    /// Adds bytes to the file being received.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when no file was begun or the bytes would make it longer
    /// than its entry declared; store errors.
    pub fn file_data(&mut self, data: &[u8]) -> Result<()> {
        self.receiving_room(data.len() as u64)?.sink.push(data)?;
        self.out.bytes_received += data.len() as u64;
        Ok(())
    }

    /// Adds `len` zero bytes to the file being received, as if they had been sent (they
    /// become holes where they fill whole chunks).
    ///
    /// # Errors
    /// As [`TreeAssembler::file_data`].
    pub fn file_zeros(&mut self, len: u64) -> Result<()> {
        let r = self.receiving_room(len)?;
        let zeros = vec![0u8; ZEROS_PIECE];
        let mut left = len;
        while left > 0 {
            let n = usize::try_from(left.min(ZEROS_PIECE as u64)).unwrap_or(ZEROS_PIECE);
            r.sink.push(zeros.get(..n).unwrap_or_default())?;
            left -= n as u64;
        }
        Ok(())
    }

    /// Ends file `index`, which must be the one being received and have received `size`
    /// bytes; its entry's size becomes `size`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for another index or a size mismatch (the file stays
    /// wanted: begin it again or fail it); store errors.
    pub fn end_file(&mut self, index: u64, size: u64) -> Result<()> {
        let receiving = match self.receiving.take() {
            Some(r) if r.index == index => r,
            other => {
                self.receiving = other;
                return Err(Error::InvalidArgument(format!("file {index} was not begun")));
            }
        };
        let (content, total) = receiving.sink.finish()?;
        let wanted = self.wanted.remove(&index).ok_or_else(|| lost(index))?;
        if total != size {
            let path = display_path(&wanted.path);
            self.wanted.insert(index, wanted);
            return Err(Error::InvalidArgument(format!(
                "{path}: {size} bytes announced but {total} received"
            )));
        }
        let entry = self.slot_mut(wanted.dir, wanted.slot)?;
        entry.content = content;
        entry.size = total;
        let done = entry.clone();
        self.out.files += 1;
        self.out.files_sent += 1;
        self.out.bytes += total;
        self.completed.push((wanted.path, done));
        self.file_done(wanted.dir)
    }

    /// Gives up on wanted file `index` (the one being received, or any not begun): it is
    /// left out of the tree and listed as skipped with `reason`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when `index` is not a wanted file still pending, or
    /// another file is being received; store errors.
    pub fn fail_file(&mut self, index: u64, reason: String) -> Result<()> {
        if let Some(r) = &self.receiving {
            if r.index != index {
                return Err(Error::InvalidArgument(format!(
                    "file {index} failed while file {} is being received",
                    r.index
                )));
            }
            self.receiving = None;
        }
        let wanted = self
            .wanted
            .remove(&index)
            .ok_or_else(|| Error::InvalidArgument(format!("file {index} is not a wanted file still pending")))?;
        let dir = self.dir_mut(wanted.dir)?;
        let cell = dir.entries.get_mut(wanted.slot).ok_or_else(|| lost(index))?;
        *cell = None;
        self.out.skipped.push((display_path(&wanted.path), reason));
        self.file_done(wanted.dir)
    }

    /// Drains the files completed since the last call: those received and those taken
    /// from the resumed set (not those taken from the parent snapshot), with their path
    /// and content, for a caller to journal. Journal them only after
    /// [`BlobWriter::flush`], so the content they name is durable.
    pub fn completed_files(&mut self) -> Vec<(Vec<u8>, Entry)> {
        std::mem::take(&mut self.completed)
    }

    /// The index the next added entry will get.
    pub fn next_index(&self) -> u64 {
        self.next_index
    }

    /// Closes every directory and returns the assembled tree.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when a wanted file never arrived; store errors.
    pub fn finish(mut self) -> Result<AssembledTree> {
        if let Some((index, w)) = self.wanted.first_key_value() {
            return Err(Error::InvalidArgument(format!(
                "{} wanted files never arrived, the first being file {index} ({})",
                self.wanted.len(),
                display_path(&w.path)
            )));
        }
        self.close_above(0)?;
        self.close_dir(0)?;
        let root = self
            .root
            .ok_or_else(|| Error::Pipeline("the root directory was not stored".into()))?;
        Ok(AssembledTree { root, ..self.out })
    }

    fn dir_mut(&mut self, index: u64) -> Result<&mut Dir> {
        self.dirs
            .get_mut(&index)
            .ok_or_else(|| Error::Pipeline(format!("directory {index} vanished")))
    }

    fn slot_mut(&mut self, dir: u64, slot: usize) -> Result<&mut Entry> {
        self.dir_mut(dir)?
            .entries
            .get_mut(slot)
            .and_then(Option::as_mut)
            .ok_or_else(|| Error::Pipeline(format!("entry {slot} of directory {dir} vanished")))
    }

    /// The depth of the open directory `parent` (0 for the root).
    fn open_depth(&self, parent: u64) -> Result<usize> {
        self.chain.iter().position(|&d| d == parent).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "entry {} names parent {parent}, which is not an open directory (the open ones are {:?})",
                self.next_index, self.chain
            ))
        })
    }

    /// Closes the open directories opened after `parent`, deepest first.
    fn close_above(&mut self, parent: u64) -> Result<()> {
        let pos = self.open_depth(parent)?;
        while self.chain.len() > pos + 1 {
            if let Some(d) = self.chain.pop() {
                self.close_dir(d)?;
            }
        }
        Ok(())
    }

    fn close_dir(&mut self, index: u64) -> Result<()> {
        let dir = self.dir_mut(index)?;
        dir.closed = true;
        dir.previous = Previous::None;
        self.settle(index)
    }

    /// A wanted file of directory `dir` is done: received or failed.
    fn file_done(&mut self, dir: u64) -> Result<()> {
        let d = self.dir_mut(dir)?;
        d.outstanding = d.outstanding.saturating_sub(1);
        self.settle(dir)
    }

    /// Stores directory `index` when it is closed and complete, then its parent when that
    /// becomes complete in turn, and so on up.
    fn settle(&mut self, index: u64) -> Result<()> {
        let mut index = index;
        loop {
            let dir = self.dir_mut(index)?;
            if !dir.closed || dir.outstanding > 0 {
                return Ok(());
            }
            let dir = self.dirs.remove(&index).ok_or_else(|| lost(index))?;
            self.held = self.held.saturating_sub(dir.bytes);
            let node = TreeNode::new(dir.entries.into_iter().flatten().collect())
                .map_err(|e| Error::InvalidArgument(format!("{}: {e}", display_path(&dir.path))))?;
            let id = TreeId::new(self.writer.store_meta(BlobKind::Tree, &node.encode())?);
            let Some((up, slot)) = dir.up else {
                self.root = Some(id);
                return Ok(());
            };
            self.slot_mut(up, slot)?.content = Content::Tree(id);
            let parent = self.dir_mut(up)?;
            parent.outstanding = parent.outstanding.saturating_sub(1);
            index = up;
        }
    }

    /// The parent snapshot's entry for `name` in directory `dir`, loading that
    /// directory's node on first use.
    fn previous_entry(&mut self, dir: u64, name: &[u8]) -> Result<Option<Entry>> {
        let writer = self.writer;
        let d = self.dir_mut(dir)?;
        if let Previous::Unloaded(id) = d.previous {
            // A parent node that cannot be read only costs re-sending, as in ingest.
            d.previous = writer.repo().load_tree(id).map_or(Previous::None, Previous::Loaded);
        }
        Ok(match &d.previous {
            Previous::Loaded(node) => node.get(name).cloned(),
            _ => None,
        })
    }

    fn open_dir(
        &mut self,
        parent: u64,
        index: u64,
        path: Vec<u8>,
        entry: Entry,
        previous: Option<Entry>,
    ) -> Result<Added> {
        let previous = match previous {
            Some(Entry {
                kind: EntryKind::Dir,
                content: Content::Tree(id),
                ..
            }) => Previous::Unloaded(id),
            _ => Previous::None,
        };
        let up = self.dir_mut(parent)?;
        let slot = up.entries.len();
        up.entries.push(Some(entry));
        up.outstanding += 1;
        self.dirs.insert(
            index,
            Dir {
                up: Some((parent, slot)),
                path,
                entries: Vec::new(),
                last_name: None,
                outstanding: 0,
                closed: false,
                previous,
                bytes: 0,
            },
        );
        self.chain.push(index);
        self.out.dirs += 1;
        Ok(Added::Other)
    }

    fn add_file(
        &mut self,
        parent: u64,
        index: u64,
        path: Vec<u8>,
        mut entry: Entry,
        previous: Option<Entry>,
    ) -> Result<Added> {
        let repo = self.writer.repo();
        let reused = match previous.filter(|p| reusable(repo, p, &entry)) {
            Some(p) => Some(p.content),
            None => self.resumed_content(&path, &entry)?,
        };
        let dir = self.dir_mut(parent)?;
        let slot = dir.entries.len();
        if reused.is_none() && entry.size > 0 {
            let declared = entry.size;
            dir.entries.push(Some(entry));
            dir.outstanding += 1;
            self.wanted.insert(
                index,
                Wanted {
                    dir: parent,
                    slot,
                    path,
                    declared,
                },
            );
            return Ok(Added::Wanted(index));
        }
        let empty = entry.size == 0;
        entry.content = reused.unwrap_or(Content::None);
        dir.entries.push(Some(entry.clone()));
        self.out.files += 1;
        self.out.files_reused += u64::from(!empty);
        self.out.files_empty += u64::from(empty);
        self.out.bytes += entry.size;
        Ok(Added::Reused)
    }

    /// The content of the resumed file at `path` when it matches `now` and the vault
    /// holds what its content names; it is then reported as completed again.
    fn resumed_content(&mut self, path: &[u8], now: &Entry) -> Result<Option<Content>> {
        let Some(previous) = self.resumed.remove(path) else {
            return Ok(None);
        };
        if !reusable(self.writer.repo(), &previous, now) || !self.holds(&previous.content)? {
            return Ok(None);
        }
        let content = previous.content.clone();
        self.completed.push((path.to_vec(), previous));
        Ok(Some(content))
    }

    /// Whether the vault (or this writer) holds the first level of `content`: the inline
    /// chunks or the list root. Catches a journal written before its content was flushed.
    fn holds(&self, content: &Content) -> Result<bool> {
        match content {
            Content::None => Ok(true),
            Content::Tree(_) | Content::Damaged(_) => Ok(false),
            Content::List { root, .. } => Ok(self
                .writer
                .stored_len(BlobKind::ChunkList, &BlobId::from(*root))?
                .is_some()),
            Content::Inline(chunks) => {
                for c in chunks {
                    if self.writer.stored_len(BlobKind::Chunk, &BlobId::from(c.id))? != Some(c.len) {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
        }
    }
}

impl std::fmt::Debug for TreeAssembler<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TreeAssembler")
            .field("next_index", &self.next_index)
            .field("open", &self.chain)
            .field("waiting_dirs", &self.dirs.len())
            .field("wanted", &self.wanted.len())
            .field("receiving", &self.receiving.as_ref().map(|r| r.index))
            .finish_non_exhaustive()
    }
}

fn lost(index: u64) -> Error {
    Error::Pipeline(format!("the assembler lost track of entry {index}"))
}

/// Refuses an entry whose name is not a single path component or whose fields would not
/// encode (or decode) faithfully.
fn check_entry(e: &Entry, path: &str) -> Result<()> {
    let bad = |what: String| Err(Error::InvalidArgument(format!("{path}: {what}")));
    let name = &e.name;
    if name.is_empty() {
        return bad("empty entry name".into());
    }
    if name.as_slice() == b"." || name.as_slice() == b".." || name.contains(&b'/') || name.contains(&0) {
        return bad("an entry name must be one path component: not `.` or `..`, no `/` or NUL".into());
    }
    if name.len() > MAX_NAME {
        return bad(format!("entry name of {} bytes is over {MAX_NAME}", name.len()));
    }
    let long16 = [&e.user, &e.group, &e.link_target].iter().any(|f| f.len() > MAX_NAME);
    if long16 {
        return bad(format!("user, group or link target over {MAX_NAME} bytes"));
    }
    if e.xattrs.len() > MAX_NAME
        || e.xattrs
            .iter()
            .any(|(k, v)| k.len() > MAX_NAME || v.len() > MAX_XATTR_VALUE)
    {
        return bad("too many or too large extended attributes".into());
    }
    if e.mtime.nsec >= 1_000_000_000 || e.ctime.nsec >= 1_000_000_000 {
        return bad("a timestamp has 1e9 nanoseconds or more".into());
    }
    Ok(())
}

/// Roughly the bytes `entry` takes in its directory's node (and in memory).
fn entry_bytes(e: &Entry) -> u64 {
    let xattrs: usize = e.xattrs.iter().map(|(k, v)| k.len() + v.len() + 6).sum();
    (e.name.len() + e.user.len() + e.group.len() + e.link_target.len() + xattrs + 128) as u64
}
