//! Snapshot of a directory tree.
//!
//! One walker thread descends the tree depth-first; every regular file that changed since
//! the parent snapshot becomes a job on a bounded rayon pool that reads, chunks, hashes,
//! compresses and seals it. At most [`FILES_IN_FLIGHT`] files are open at once, each with
//! at most one chunk plus one read buffer in memory, and the packer's queue is bounded, so
//! memory does not grow with the size of the tree or of any file.

use std::ffi::OsString;
use std::fs::File;
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};

use crate::error::{Error, Result};
use crate::format::blob::BlobKind;
use crate::format::snapshot::{Snapshot, SnapshotStats, SourceKind};
use crate::format::tree::{Content, Entry, EntryKind, TreeNode};
use crate::id::{SnapshotId, TreeId};
use crate::ops::fsmeta::{self, NameCache};
use crate::ops::progress::Progress;
use crate::ops::stream::{StreamError, store_stream};

use crate::ops::content::content_intact;
use crate::ops::exclude::Excludes;
/// Bytes read from a file per `read` call.
pub use crate::ops::stream::READ_BUFFER;
use crate::ops::{Labels, display_path, join_rel, worker_pool};
use crate::repo::Repository;
use crate::repo::writer::{BlobWriter, WriteStats};

/// Files being read at once, per worker thread.
pub const FILES_IN_FLIGHT_PER_THREAD: usize = 2;
/// Stack of the walker thread (deep trees recurse).
const WALKER_STACK: usize = 64 * 1024 * 1024;

/// Which snapshot to compare against to skip unchanged files.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ParentChoice {
    /// The latest snapshot of the same host and path (and environment, when given).
    #[default]
    Auto,
    /// No parent: read everything.
    None,
    /// This snapshot.
    Given(SnapshotId),
}

/// What to record with a tree snapshot.
#[derive(Clone, Debug, Default)]
pub struct TreeOptions {
    /// What the snapshot records about itself.
    pub labels: Labels,
    /// Parent selection.
    pub parent: ParentChoice,
    /// Worker threads (0: one per core).
    pub threads: usize,
    /// Live counters.
    pub progress: Option<Arc<Progress>>,
    /// Paths left out (not read, not recorded).
    pub exclude: Excludes,
}

/// What a snapshot did.
#[derive(Clone, Debug)]
pub struct SnapshotSummary {
    /// The new snapshot.
    pub id: SnapshotId,
    /// Its object.
    pub snapshot: Snapshot,
    /// The parent used for change detection.
    pub parent: Option<SnapshotId>,
    /// What the store grew by.
    pub written: WriteStats,
    /// Files whose content was taken from the parent without reading.
    pub files_unchanged: u64,
    /// Bytes read from the source.
    pub bytes_read: u64,
    /// Paths skipped, with the reason.
    pub skipped: Vec<(String, String)>,
}

struct Shared {
    writer: BlobWriter,
    exclude: Excludes,
    pool: rayon::ThreadPool,
    slots: (Sender<()>, Receiver<()>),
    names: NameCache,
    progress: Arc<Progress>,
    counters: Mutex<Counters>,
}

#[derive(Default)]
struct Counters {
    files: u64,
    dirs: u64,
    bytes: u64,
    bytes_read: u64,
    unchanged: u64,
    skipped: Vec<(String, String)>,
}

impl Shared {
    fn count(&self, f: impl FnOnce(&mut Counters)) {
        if let Ok(mut c) = self.counters.lock() {
            f(&mut c);
        }
    }
    fn skip(&self, path: &[u8], why: String) {
        self.progress.add_error();
        self.count(|c| c.skipped.push((display_path(path), why)));
    }
}

/// Snapshots the directory `source` and commits the snapshot object last. The snapshot's
/// root is the directory's tree, and its root entry the directory's own metadata.
///
/// Unreadable files and directories are skipped, listed in the summary and recorded in
/// the snapshot, which is then marked incomplete.
///
/// # Errors
/// [`Error::Io`] when `source` is not a readable directory; store errors abort the
/// snapshot and leave no snapshot object.
pub fn snapshot_tree(repo: &Repository, source: &Path, opts: &TreeOptions) -> Result<SnapshotSummary> {
    snapshot_paths(repo, &[source.to_path_buf()], opts)
}

/// What a tree snapshot reads: one directory, or several paths under one new root. A
/// push reads its sources the same way, so both store the same tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sources {
    /// One directory: the root is its tree.
    Dir(PathBuf),
    /// Several paths (directories, files, anything): the root is a directory made for the
    /// snapshot, holding each under its own name.
    Several(Vec<(PathBuf, Vec<u8>)>),
}

impl Sources {
    /// Canonical paths, checked: one must be a directory; several must have distinct names.
    ///
    /// # Errors
    /// [`Error::Io`] for a path that cannot be resolved; [`Error::InvalidArgument`] for no
    /// path, one that is not a directory, or two with the same name.
    pub fn new(paths: &[PathBuf]) -> Result<Self> {
        let canonical = paths
            .iter()
            .map(|p| std::fs::canonicalize(p).map_err(|e| Error::io(p, e)))
            .collect::<Result<Vec<_>>>()?;
        match canonical.as_slice() {
            [] => Err(Error::InvalidArgument("give at least one path to snapshot".into())),
            [one] => {
                let meta = std::fs::metadata(one).map_err(|e| Error::io(one, e))?;
                if !meta.is_dir() {
                    return Err(Error::InvalidArgument(format!(
                        "{} is not a directory (give it with another path to snapshot a single file)",
                        one.display()
                    )));
                }
                Ok(Sources::Dir(one.clone()))
            }
            several => Self::several(several),
        }
    }

    fn several(paths: &[PathBuf]) -> Result<Self> {
        let mut named: Vec<(PathBuf, Vec<u8>)> = Vec::with_capacity(paths.len());
        for p in paths {
            let name = p
                .file_name()
                .map(|n| n.as_bytes().to_vec())
                .ok_or_else(|| Error::InvalidArgument(format!("{} has no name to store it under", p.display())))?;
            if let Some((other, _)) = named.iter().find(|(_, n)| *n == name) {
                return Err(Error::InvalidArgument(format!(
                    "{} and {} would both be stored as {}: snapshot them separately",
                    other.display(),
                    p.display(),
                    display_path(&name)
                )));
            }
            named.push((p.clone(), name));
        }
        named.sort_by(|a, b| a.1.cmp(&b.1));
        Ok(Sources::Several(named))
    }

    /// The snapshot's source path: the directory, or the paths one per line.
    pub fn source_path(&self) -> String {
        match self {
            Sources::Dir(p) => p.to_string_lossy().into_owned(),
            Sources::Several(v) => v
                .iter()
                .map(|(p, _)| p.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }
}

/// Snapshots several paths into one tree snapshot (see [`snapshot_tree`] for one
/// directory). With several paths the root is a directory that holds each path under its
/// last component (which must differ), and there is no root entry.
///
/// # Errors
/// As [`snapshot_tree`]; [`Error::InvalidArgument`] for no path or clashing names.
pub fn snapshot_paths(repo: &Repository, paths: &[PathBuf], opts: &TreeOptions) -> Result<SnapshotSummary> {
    let sources = Sources::new(paths)?;
    let hostname = hostname();
    let source_path = sources.source_path();
    opts.labels.check()?;
    let parent = find_parent(repo, &opts.parent, &hostname, &source_path, &opts.labels.environment)?;
    let parent_root = match &parent {
        Some((_, snap)) => Some(repo.load_tree(TreeId::new(snap.root))?),
        None => None,
    };
    let pool = worker_pool(opts.threads, "ingest")?;
    let threads = pool.current_num_threads();
    let shared = Arc::new(Shared {
        writer: BlobWriter::new(repo)?,
        exclude: opts.exclude.clone(),
        pool,
        slots: bounded(threads * FILES_IN_FLIGHT_PER_THREAD),
        names: NameCache::default(),
        progress: opts.progress.clone().unwrap_or_default(),
        counters: Mutex::default(),
    });
    let walker_shared = shared.clone();
    let (root, root_entry) = std::thread::Builder::new()
        .name("amber-walker".into())
        .stack_size(WALKER_STACK)
        .spawn(move || store_root(&walker_shared, &sources, parent_root.as_ref()))
        .map_err(|e| Error::Pipeline(e.to_string()))?
        .join()
        .map_err(|_| Error::Pipeline("the walker thread panicked".into()))??;
    let shared = Arc::into_inner(shared).ok_or_else(|| Error::Pipeline("file jobs still running".into()))?;
    let written = shared.writer.finish()?;
    let counters = shared
        .counters
        .into_inner()
        .map_err(|_| Error::Pipeline("counters poisoned".into()))?;
    let stats = SnapshotStats {
        files: counters.files,
        dirs: counters.dirs,
        bytes: counters.bytes,
        bytes_new: written.bytes_new,
        blobs_new: written.blobs_new,
    };
    let mut snapshot = opts.labels.snapshot(
        SourceKind::Tree,
        *root.hash(),
        parent.as_ref().map(|p| p.0),
        source_path,
        stats,
    );
    snapshot.root_entry = root_entry;
    snapshot.record_skips(&counters.skipped);
    let id = repo.commit_snapshot(&snapshot)?;
    Ok(SnapshotSummary {
        id,
        snapshot,
        parent: parent.map(|p| p.0),
        written,
        files_unchanged: counters.unchanged,
        bytes_read: counters.bytes_read,
        skipped: counters.skipped,
    })
}

/// Nanoseconds since the epoch.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// This machine's host name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn find_parent(
    repo: &Repository,
    choice: &ParentChoice,
    host: &str,
    path: &str,
    env: &str,
) -> Result<Option<(SnapshotId, Snapshot)>> {
    match choice {
        ParentChoice::None => Ok(None),
        ParentChoice::Given(id) => Ok(Some((*id, repo.load_snapshot(*id)?))),
        ParentChoice::Auto => Ok(repo.snapshots()?.into_iter().rev().find(|(_, s)| {
            s.source == SourceKind::Tree && s.hostname == host && s.source_path == path && s.environment == env
        })),
    }
}

/// Opens a file that `lstat` called regular, without following a symlink and without
/// blocking: if it was replaced by a FIFO or device since, that is an error, not a hang.
///
/// # Errors
/// The open error, or `InvalidInput` when the path is no longer a regular file.
pub fn open_regular(path: &Path) -> std::io::Result<File> {
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::new(
            ErrorKind::InvalidInput,
            "it is no longer a regular file (replaced while the snapshot ran)",
        ));
    }
    Ok(file)
}

/// Sorted names of a directory.
fn read_names(path: &Path) -> std::io::Result<Vec<OsString>> {
    let mut names = std::fs::read_dir(path)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<Vec<_>>>()?;
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

/// Stores the root: the one directory (with its metadata as the root entry), or the
/// directory made for several sources.
fn store_root(shared: &Arc<Shared>, sources: &Sources, parent: Option<&TreeNode>) -> Result<(TreeId, Option<Entry>)> {
    match sources {
        Sources::Dir(dir) => {
            let root = store_dir(shared, dir, b"", parent)?;
            let mut entry = read_entry(shared, dir, b"", b"");
            if let Some(e) = entry.as_mut() {
                e.content = Content::Tree(root);
            }
            Ok((root, entry))
        }
        Sources::Several(paths) => Ok((store_entries(shared, paths.clone(), b"", parent)?, None)),
    }
}

/// Stores one directory (recursively) and returns its tree id.
fn store_dir(shared: &Arc<Shared>, path: &Path, rel: &[u8], parent: Option<&TreeNode>) -> Result<TreeId> {
    let names = match read_names(path) {
        Ok(n) => n,
        Err(e) => {
            shared.skip(rel, format!("cannot list directory: {e}"));
            Vec::new()
        }
    };
    let children = names
        .into_iter()
        .map(|name| (path.join(&name), name.as_bytes().to_vec()))
        .filter(|(_, name)| !shared.exclude.excludes(&join_rel(rel, name), name))
        .collect();
    store_entries(shared, children, rel, parent)
}

/// Stores the entries `children` (path, name; sorted by name) as one directory node.
fn store_entries(
    shared: &Arc<Shared>,
    children: Vec<(PathBuf, Vec<u8>)>,
    rel: &[u8],
    parent: Option<&TreeNode>,
) -> Result<TreeId> {
    let (tx, rx) = unbounded::<(usize, std::result::Result<(Content, u64), StreamError>)>();
    let mut entries: Vec<Option<Entry>> = Vec::with_capacity(children.len());
    let mut jobs = 0usize;
    for (child, name) in children {
        let child_rel = join_rel(rel, &name);
        let Some(mut entry) = read_entry(shared, &child, &child_rel, &name) else {
            continue;
        };
        let previous = parent.and_then(|p| p.get(&entry.name));
        match entry.kind {
            EntryKind::Dir => {
                let sub_parent = previous.and_then(|p| load_subtree(shared, p));
                entry.content = Content::Tree(store_dir(shared, &child, &child_rel, sub_parent.as_ref())?);
                shared.count(|c| c.dirs += 1);
            }
            EntryKind::File => match previous.filter(|p| reusable(shared.writer.repo(), p, &entry)) {
                Some(p) => {
                    entry.content = p.content.clone();
                    shared.progress.add_file(0);
                    shared.count(|c| {
                        c.files += 1;
                        c.bytes += entry.size;
                        c.unchanged += 1;
                    });
                }
                None => {
                    spawn_file_job(shared, child, entry.size, entries.len(), tx.clone())?;
                    jobs += 1;
                }
            },
            _ => {}
        }
        entries.push(Some(entry));
    }
    collect_file_jobs(shared, rel, &rx, jobs, &mut entries)?;
    let node = TreeNode::new(entries.into_iter().flatten().collect())?;
    Ok(TreeId::new(shared.writer.store_meta(BlobKind::Tree, &node.encode())?))
}

fn read_entry(shared: &Shared, child: &Path, rel: &[u8], name: &[u8]) -> Option<Entry> {
    let meta = match std::fs::symlink_metadata(child) {
        Ok(m) => m,
        Err(e) => {
            if e.kind() != ErrorKind::NotFound {
                shared.skip(rel, format!("cannot stat: {e}"));
            }
            return None;
        }
    };
    match fsmeta::entry_from(name, child, &meta, &shared.names) {
        Ok(e) => Some(e),
        Err(e) => {
            shared.skip(rel, format!("cannot read metadata: {e}"));
            None
        }
    }
}

fn load_subtree(shared: &Shared, previous: &Entry) -> Option<TreeNode> {
    match (&previous.kind, &previous.content) {
        (EntryKind::Dir, Content::Tree(id)) => shared.writer.repo().load_tree(*id).ok(),
        _ => None,
    }
}

/// A file's content may be taken from the parent's entry when the file is unchanged and
/// every blob that content names is still held and not known damaged: a file whose
/// content lost a blob is read again, so damage does not spread into new snapshots.
pub(crate) fn reusable(repo: &Repository, previous: &Entry, now: &Entry) -> bool {
    unchanged(previous, now) && content_intact(repo, &previous.content)
}

/// A file is unchanged when size, mtime, ctime and inode all match the parent's entry.
pub(crate) fn unchanged(previous: &Entry, now: &Entry) -> bool {
    previous.kind == EntryKind::File
        && now.kind == EntryKind::File
        && previous.size == now.size
        && previous.mtime == now.mtime
        && previous.ctime == now.ctime
        && previous.inode == now.inode
}

type JobResult = (usize, std::result::Result<(Content, u64), StreamError>);

fn spawn_file_job(shared: &Arc<Shared>, path: PathBuf, size: u64, slot: usize, tx: Sender<JobResult>) -> Result<()> {
    // Blocks while FILES_IN_FLIGHT jobs are running: the bound on open files and memory.
    shared
        .slots
        .0
        .send(())
        .map_err(|_| Error::Pipeline("job slots closed".into()))?;
    let job_shared = shared.clone();
    shared.pool.spawn(move || {
        let result = ingest_file(&job_shared, &path, size);
        let _ = job_shared.slots.1.recv();
        // Let go of the shared state before reporting, so the walker's last receive
        // means no job holds it any more.
        drop(job_shared);
        let _ = tx.send((slot, result));
    });
    Ok(())
}

fn collect_file_jobs(
    shared: &Shared,
    rel: &[u8],
    rx: &Receiver<JobResult>,
    jobs: usize,
    entries: &mut [Option<Entry>],
) -> Result<()> {
    for _ in 0..jobs {
        let (slot, result) = rx.recv().map_err(|_| Error::Pipeline("a file job vanished".into()))?;
        let Some(cell) = entries.get_mut(slot) else { continue };
        match result {
            Ok((content, size)) => {
                if let Some(e) = cell.as_mut() {
                    e.content = content;
                    e.size = size;
                    shared.count(|c| {
                        c.files += 1;
                        c.bytes += size;
                    });
                }
            }
            Err(StreamError::Source(err)) => {
                let name = cell.as_ref().map(|e| join_rel(rel, &e.name)).unwrap_or_default();
                shared.skip(&name, format!("cannot read: {err}"));
                *cell = None;
            }
            Err(StreamError::Engine(err)) => return Err(err),
        }
    }
    Ok(())
}

/// Reads, chunks and stores one file, at most the `size` its metadata gave (a file that
/// grows meanwhile is stored as it was then, as a push does); returns its content and the
/// bytes actually read.
fn ingest_file(shared: &Shared, path: &Path, size: u64) -> std::result::Result<(Content, u64), StreamError> {
    let mut file = open_regular(path).map_err(StreamError::Source)?;
    let (content, total) = store_stream(&shared.writer, &mut file, size, &shared.progress)?;
    shared.count(|c| c.bytes_read += total);
    shared.progress.add_file(0);
    Ok((content, total))
}
