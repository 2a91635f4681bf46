//! Restore a tree snapshot to a directory.
//!
//! The walker creates directories, symlinks, special files and empty regular files in
//! order (so hard links can be made at once), and hands each file's content to a bounded
//! pool that reads, verifies and writes it, leaving all-zero chunks as holes. Directory
//! metadata is applied last, deepest first, so writing inside does not disturb it.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crossbeam_channel::{Receiver, Sender, bounded};
use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::error::{Error, Result};
use crate::format::tree::{Content, Entry, EntryKind};
use crate::id::TreeId;
use crate::ops::content::{Piece, for_each_chunk, for_each_piece};
use crate::ops::fsmeta;
use crate::ops::progress::Progress;
use crate::ops::{join_rel, reading_pool};
use crate::repo::Repository;

/// Files being written at once, per worker thread.
pub const FILES_IN_FLIGHT_PER_THREAD: usize = 2;

/// How to restore.
#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    /// Only paths matching one of these globs (relative to the snapshot root), and
    /// everything below a matching directory. Empty: everything.
    pub include: Vec<String>,
    /// Worker threads (0: one per core).
    pub threads: usize,
    /// Live counters.
    pub progress: Option<Arc<Progress>>,
    /// Metadata of the snapshotted directory itself (the snapshot's root entry), applied
    /// to `dest` last when everything is restored.
    pub root_entry: Option<Entry>,
}

/// One path that failed to restore.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathError {
    /// Path relative to the snapshot root (raw name bytes joined by `/`).
    pub path: Vec<u8>,
    /// What went wrong.
    pub message: String,
}

/// What a restore did.
#[derive(Clone, Debug, Default)]
pub struct RestoreReport {
    /// Regular files restored.
    pub files: u64,
    /// Directories created.
    pub dirs: u64,
    /// Symlinks, hard links and special files created.
    pub others: u64,
    /// Content bytes written.
    pub bytes: u64,
    /// Paths that failed: their content could not be read or verified.
    pub errors: Vec<PathError>,
    /// Metadata that could not be applied (owner, xattrs on unsupporting file systems).
    pub warnings: Vec<PathError>,
    /// Entries a repair marked damaged that are still short of data: restored with what
    /// can be read (lost bytes left as zeros, a lost directory's entries missing).
    pub damaged: Vec<DamagedPath>,
}

/// An entry marked damaged, restored in part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DamagedPath {
    /// Path relative to the snapshot root.
    pub path: Vec<u8>,
    /// Bytes left as zeros because they are lost; `None` for a directory whose entries are
    /// lost.
    pub lost_bytes: Option<u64>,
}

struct Shared {
    repo: Repository,
    pool: rayon::ThreadPool,
    slots: (Sender<()>, Receiver<()>),
    chown: bool,
    progress: Arc<Progress>,
    report: Mutex<RestoreReport>,
}

impl Shared {
    fn with_report(&self, f: impl FnOnce(&mut RestoreReport)) {
        if let Ok(mut r) = self.report.lock() {
            f(&mut r);
        }
    }
    fn error(&self, path: &[u8], message: String) {
        self.progress.add_error();
        self.with_report(|r| {
            r.errors.push(PathError {
                path: path.to_vec(),
                message,
            })
        });
    }
    fn damaged(&self, path: &[u8], lost_bytes: Option<u64>) {
        self.with_report(|r| {
            r.damaged.push(DamagedPath {
                path: path.to_vec(),
                lost_bytes,
            })
        });
    }
    fn warn(&self, path: &[u8], warnings: Vec<String>) {
        if !warnings.is_empty() {
            self.with_report(|r| {
                r.warnings.extend(warnings.into_iter().map(|message| PathError {
                    path: path.to_vec(),
                    message,
                }));
            });
        }
    }
}

struct Walk {
    include: Option<GlobSet>,
    /// Paths selected so far (an `--include` that selects nothing is an error).
    selected: u64,
    /// (device, inode) of multiply-linked files → the path restored first.
    links: HashMap<(u64, u64), (PathBuf, Vec<u8>)>,
    /// Later names of those files: linked once every file's content is written, and only
    /// when the first name's content was restored.
    later_links: Vec<LaterLink>,
    /// Directories created, in creation order, with their entries.
    /// Every directory walked, in walking order, and whether it was selected itself
    /// (others exist only when a selected path below them was restored).
    dirs: Vec<(PathBuf, Vec<u8>, Entry, bool)>,
}

/// A hard link to make after the file jobs: `path` (`rel`) becomes another name of
/// `first` (`first_rel`).
struct LaterLink {
    first: PathBuf,
    first_rel: Vec<u8>,
    path: PathBuf,
    rel: Vec<u8>,
}

/// Restores the tree `root` into `dest` (created if missing). Failures of single paths
/// are collected in the report and do not stop the restore.
///
/// # Errors
/// [`Error::Io`] when `dest` cannot be created; [`Error::InvalidArgument`] for a bad glob
/// or an `include` list that selects nothing; errors reading the root tree.
pub fn restore_tree(repo: &Repository, root: TreeId, dest: &Path, opts: &RestoreOptions) -> Result<RestoreReport> {
    let dest_existed = dest.exists();
    fs::create_dir_all(dest).map_err(|e| Error::io(dest, e))?;
    let pool = reading_pool(repo, opts.threads, "restore")?;
    let threads = pool.current_num_threads();
    let shared = Arc::new(Shared {
        repo: repo.clone(),
        pool,
        slots: bounded(threads * FILES_IN_FLIGHT_PER_THREAD),
        chown: fsmeta::can_chown(),
        progress: opts.progress.clone().unwrap_or_default(),
        report: Mutex::default(),
    });
    let mut walk = Walk {
        include: build_globs(&opts.include)?,
        selected: 0,
        links: HashMap::new(),
        later_links: Vec::new(),
        dirs: Vec::new(),
    };
    let node = repo.load_tree(root)?;
    let everything = walk.include.is_none();
    restore_dir(&shared, &mut walk, node.entries(), dest, b"", everything)?;
    wait_for_jobs(&shared, threads)?;
    if !everything && walk.selected == 0 {
        if !dest_existed {
            let _ = fs::remove_dir(dest);
        }
        return Err(Error::InvalidArgument(format!(
            "--include {} matches no path of the snapshot: nothing was restored",
            opts.include.join(", ")
        )));
    }
    make_later_links(&shared, &walk.later_links);
    for (path, rel, entry, chosen) in walk.dirs.iter().rev() {
        if *chosen || fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
            shared.with_report(|r| r.dirs += u64::from(!*chosen));
            shared.warn(rel, fsmeta::apply(path, entry, shared.chown));
        }
    }
    if let Some(root_entry) = opts.root_entry.as_ref().filter(|_| everything) {
        shared.warn(b"", fsmeta::apply(dest, root_entry, shared.chown));
    }
    let mut report = shared
        .report
        .lock()
        .map(|r| r.clone())
        .map_err(|_| Error::Pipeline("report poisoned".into()))?;
    // Files finish in any order; the report lists them as the tree does.
    report.damaged.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(report)
}

/// Waits for every file job: each holds a slot until it is done.
fn wait_for_jobs(shared: &Shared, threads: usize) -> Result<()> {
    for _ in 0..threads * FILES_IN_FLIGHT_PER_THREAD {
        shared
            .slots
            .0
            .send(())
            .map_err(|_| Error::Pipeline("job slots closed".into()))?;
    }
    Ok(())
}

/// Makes the later names of hard-linked files, once the first name's content is in place;
/// a later name of a file that failed fails too (it would share the damaged content).
fn make_later_links(shared: &Shared, links: &[LaterLink]) {
    let failed: std::collections::HashSet<Vec<u8>> = shared
        .report
        .lock()
        .map(|r| r.errors.iter().map(|e| e.path.clone()).collect())
        .unwrap_or_default();
    for l in links {
        if failed.contains(&l.first_rel) {
            let first = crate::ops::display_path(&l.first_rel);
            shared.error(
                &l.rel,
                format!("not linked: its first name {first} could not be restored"),
            );
            continue;
        }
        let linked = clear_path(&l.path).and_then(|()| fs::hard_link(&l.first, &l.path));
        match linked {
            Ok(()) => shared.with_report(|r| r.others += 1),
            Err(e) => shared.error(&l.rel, Error::io(&l.path, e).to_string()),
        }
    }
}

fn build_globs(patterns: &[String]) -> Result<Option<GlobSet>> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        let p = p.trim_start_matches('/');
        b.add(Glob::new(p).map_err(|e| Error::InvalidArgument(format!("bad --include {p:?}: {e}")))?);
    }
    b.build().map(Some).map_err(|e| Error::InvalidArgument(e.to_string()))
}

fn restore_dir(
    shared: &Arc<Shared>,
    walk: &mut Walk,
    entries: &[Entry],
    dir: &Path,
    rel: &[u8],
    selected: bool,
) -> Result<()> {
    for entry in entries {
        let path = dir.join(std::ffi::OsStr::from_bytes(&entry.name));
        let child_rel = join_rel(rel, &entry.name);
        let chosen = selected
            || walk
                .include
                .as_ref()
                .is_some_and(|g| g.is_match(Path::new(OsStr::from_bytes(&child_rel))));
        walk.selected += u64::from(chosen);
        if entry.kind == EntryKind::Dir {
            restore_subdir(shared, walk, entry, &path, &child_rel, chosen)?;
        } else if chosen && let Err(e) = restore_leaf(shared, walk, entry, &path, &child_rel) {
            shared.error(&child_rel, e.to_string());
        }
    }
    Ok(())
}

fn restore_subdir(
    shared: &Arc<Shared>,
    walk: &mut Walk,
    entry: &Entry,
    path: &Path,
    rel: &[u8],
    chosen: bool,
) -> Result<()> {
    let (id, marked) = match entry.content.refs() {
        Content::Tree(id) => (*id, entry.content.is_damaged()),
        _ => {
            shared.error(rel, "directory without a tree".into());
            return Ok(());
        }
    };
    let node = match shared.repo.load_tree(id) {
        Ok(n) => n,
        // A directory a repair marked damaged: made empty, named in the report.
        Err(_) if marked => {
            if chosen {
                if let Err(e) = create_dir(path) {
                    shared.error(rel, e.to_string());
                    return Ok(());
                }
                shared.with_report(|r| r.dirs += 1);
                shared.damaged(rel, None);
            }
            walk.dirs
                .push((path.to_path_buf(), rel.to_vec(), entry.clone(), chosen));
            return Ok(());
        }
        Err(e) => {
            shared.error(rel, format!("cannot read directory: {e}"));
            return Ok(());
        }
    };
    if chosen {
        if let Err(e) = create_dir(path) {
            shared.error(rel, e.to_string());
            return Ok(());
        }
        shared.with_report(|r| r.dirs += 1);
    }
    walk.dirs
        .push((path.to_path_buf(), rel.to_vec(), entry.clone(), chosen));
    restore_dir(shared, walk, node.entries(), path, rel, chosen)
}

fn create_dir(path: &Path) -> std::io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => {
            fs::remove_file(path)?;
            fs::create_dir(path)
        }
        Err(_) => fs::create_dir_all(path),
    }
}

/// Removes whatever non-directory sits at `path`, so nothing is written through a symlink.
fn clear_path(path: &Path) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(_) => Ok(()),
    }
}

fn restore_leaf(shared: &Arc<Shared>, walk: &mut Walk, entry: &Entry, path: &Path, rel: &[u8]) -> Result<()> {
    let link_key = (entry.kind == EntryKind::File && entry.nlink > 1).then_some((entry.device, entry.inode));
    if let Some((first, first_rel)) = link_key.and_then(|k| walk.links.get(&k)) {
        walk.later_links.push(LaterLink {
            first: first.clone(),
            first_rel: first_rel.clone(),
            path: path.to_path_buf(),
            rel: rel.to_vec(),
        });
        return Ok(());
    }
    clear_path(path).map_err(|e| Error::io(path, e))?;
    match entry.kind {
        EntryKind::File => {
            File::create_new(path).map_err(|e| Error::io(path, e))?;
            if let Some(k) = link_key {
                walk.links.insert(k, (path.to_path_buf(), rel.to_vec()));
            }
            spawn_file_job(shared, entry.clone(), path.to_path_buf(), rel.to_vec())
        }
        EntryKind::Symlink => {
            std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&entry.link_target), path)
                .map_err(|e| Error::io(path, e))?;
            finish_other(shared, entry, path, rel);
            Ok(())
        }
        EntryKind::Fifo | EntryKind::CharDevice | EntryKind::BlockDevice => {
            make_node(entry, path).map_err(|e| Error::io(path, e))?;
            finish_other(shared, entry, path, rel);
            Ok(())
        }
        EntryKind::Socket | EntryKind::Dir => Ok(()),
    }
}

fn finish_other(shared: &Shared, entry: &Entry, path: &Path, rel: &[u8]) {
    shared.warn(rel, fsmeta::apply(path, entry, shared.chown));
    shared.with_report(|r| r.others += 1);
}

/// Creates a FIFO or device node for `entry` at `path`.
///
/// # Errors
/// What `mknod` returns (devices need root).
pub fn make_node(entry: &Entry, path: &Path) -> std::io::Result<()> {
    use nix::sys::stat::{Mode, SFlag, mknod};
    let kind = match entry.kind {
        EntryKind::Fifo => SFlag::S_IFIFO,
        EntryKind::CharDevice => SFlag::S_IFCHR,
        _ => SFlag::S_IFBLK,
    };
    let mode = Mode::from_bits_truncate(entry.mode & 0o777);
    mknod(path, kind, mode, entry.rdev).map_err(std::io::Error::from)
}

fn spawn_file_job(shared: &Arc<Shared>, entry: Entry, path: PathBuf, rel: Vec<u8>) -> Result<()> {
    shared
        .slots
        .0
        .send(())
        .map_err(|_| Error::Pipeline("job slots closed".into()))?;
    let job = shared.clone();
    shared.pool.spawn(move || {
        let written = if entry.content.is_damaged() {
            write_damaged_file(&job, &entry, &path, &rel)
        } else {
            write_file(&job, &entry, &path)
        };
        match written {
            Ok(bytes) => {
                job.warn(&rel, fsmeta::apply(&path, &entry, job.chown));
                job.progress.add_file(0);
                job.with_report(|r| {
                    r.files += 1;
                    r.bytes += bytes;
                });
            }
            Err(e) => {
                let _ = fs::remove_file(&path);
                job.error(&rel, e.to_string());
            }
        }
        // Let go of the repository before releasing the slot: once every slot is free the
        // caller may return and the process exit, and nothing may still be closing RocksDB.
        let slots = job.slots.1.clone();
        drop(job);
        let _ = slots.recv();
    });
    Ok(())
}

/// Blocks of zeros this long (and aligned) inside a chunk are left unwritten.
const SPARSE_BLOCK: usize = 4096;

/// Writes `data` at `offset` of `file`, skipping every aligned 4 KiB block of zeros, so a
/// file restored over an empty (or truncated) file stays as sparse as its source.
///
/// # Errors
/// The write error.
pub fn write_sparse_at(file: &File, offset: u64, data: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut at = 0usize;
    while at < data.len() {
        // The first byte of the next run, then its end: a run is data, or zero blocks.
        let block_end = |i: usize| (i - i % SPARSE_BLOCK + SPARSE_BLOCK).min(data.len());
        let zero = |i: usize| data.get(i..block_end(i)).is_some_and(|b| b.iter().all(|&x| x == 0));
        let starts_zero = zero(at);
        let mut end = block_end(at);
        while end < data.len() && zero(end) == starts_zero {
            end = block_end(end);
        }
        if !starts_zero {
            file.write_all_at(data.get(at..end).unwrap_or_default(), offset + at as u64)?;
        }
        at = end;
    }
    Ok(())
}

/// Writes a file's content, verifying every chunk, leaving all-zero chunks (and zero
/// blocks inside chunks) as holes.
fn write_file(shared: &Shared, entry: &Entry, path: &Path) -> Result<u64> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    let mut written = 0u64;
    for_each_chunk(&shared.repo, &entry.content, &mut |c| {
        if !c.id.is_hole() {
            let data = shared.repo.read_chunk(c.id)?;
            if data.len() as u64 != u64::from(c.len) {
                return Err(Error::Corrupt {
                    kind: "chunk",
                    id: c.id.to_hex(),
                    detail: format!("{} bytes where the file's chunk list says {}", data.len(), c.len),
                });
            }
            write_sparse_at(&file, written, &data).map_err(|e| Error::io(path, e))?;
        }
        written += u64::from(c.len);
        shared.progress.add_bytes(u64::from(c.len));
        Ok(())
    })?;
    if written != entry.size {
        return Err(Error::Corrupt {
            kind: "file content",
            id: String::new(),
            detail: format!("chunks hold {written} bytes, the entry says {}", entry.size),
        });
    }
    file.set_len(written).map_err(|e| Error::io(path, e))?;
    Ok(written)
}

/// Writes what can be read of a file a repair marked damaged: lost chunks (and the bytes
/// below lost chunk-list nodes) stay zeros, the file keeps its size, and the report names
/// it with the bytes lost. A file whose data is all back is restored whole.
fn write_damaged_file(shared: &Shared, entry: &Entry, path: &Path, rel: &[u8]) -> Result<u64> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    let (mut at, mut lost) = (0u64, 0u64);
    for_each_piece(&shared.repo, &entry.content, entry.size, &mut |piece| {
        let len = match piece {
            Piece::Lost(n) => {
                lost += n;
                n
            }
            Piece::Chunk(c) if c.id.is_hole() => u64::from(c.len),
            Piece::Chunk(c) => {
                match shared.repo.read_chunk(c.id) {
                    Ok(data) if data.len() as u64 == u64::from(c.len) => {
                        write_sparse_at(&file, at, &data).map_err(|e| Error::io(path, e))?;
                    }
                    Ok(_) => lost += u64::from(c.len),
                    Err(e) if crate::repo::is_damage(&e) => lost += u64::from(c.len),
                    Err(e) => return Err(e),
                }
                u64::from(c.len)
            }
        };
        at += len;
        shared.progress.add_bytes(len);
        Ok(())
    })?;
    file.set_len(entry.size).map_err(|e| Error::io(path, e))?;
    if lost > 0 || at != entry.size {
        shared.damaged(rel, Some(lost + entry.size.saturating_sub(at)));
    }
    Ok(entry.size)
}
