//! `amber restore --server`: reads the plan, then fetches chunks in parallel, verifies each
//! against its id and writes it in place. Chunks already on disk that verify are kept, so
//! an interrupted restore resumes where it stopped.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use amber_engine::format::tree::{Entry, EntryKind};
use amber_engine::ops::display_path;
use amber_engine::ops::fsmeta;
use amber_engine::ops::restore::PathError;
use amber_proto::v1 as pb;
use amber_proto::v1::plan_message::Item;
use anyhow::{Context, Result, bail};
use globset::{Glob, GlobSet, GlobSetBuilder};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::cli::Global;
use crate::client::{Remote, block_on, failed};
use crate::commands::inspect::extend;
use crate::commands::restore::{damaged_line, damaged_paths, path_errors, restore_head};
use crate::output::{bytes, emit, failure};
use amber_server::serve::convert;

/// Chunks per ReadChunks call.
const GROUP: usize = 64;
/// ReadChunks calls in flight.
const PARALLEL: usize = 4;
/// Files held open while their chunks are fetched.
const WINDOW: usize = 256;

/// What to restore and where.
pub struct PullArgs<'a> {
    /// Snapshot id, prefix or `latest`.
    pub snapshot: &'a str,
    /// Target directory (trees).
    pub dest: Option<&'a Path>,
    /// Target image (volumes).
    pub block: Option<&'a Path>,
    /// Older image to take matching blocks from.
    pub seed: Option<&'a Path>,
    /// Only paths matching these globs, as `amber restore --include` locally (trees).
    pub include: &'a [String],
}

/// One entry of the plan.
struct Item0 {
    /// Where it goes (relative to DEST, then joined with it).
    path: PathBuf,
    /// Its path in the snapshot (raw bytes), for messages and the document.
    rel: Vec<u8>,
    entry: Entry,
    chunks: Vec<(pb::ChunkRef, u64)>,
    /// Marked damaged by a repair, and still short of data.
    damaged: bool,
    /// Selected by `--include` (or everything); other directories are only ancestors.
    chosen: bool,
}

/// A plan read from the server.
struct Plan {
    start: pb::PlanStart,
    /// The snapshot's root directory itself, applied to DEST last.
    root: Option<Entry>,
    items: Vec<Item0>,
}

/// Counters for the summary.
#[derive(Default)]
struct Tally {
    files: u64,
    dirs: u64,
    others: u64,
    bytes: u64,
    blocks: u64,
    holes: u64,
    bytes_fetched: u64,
    chunks_fetched: u64,
    chunks_kept: u64,
    chunks_seeded: u64,
    warnings: Vec<PathError>,
    /// Entries marked damaged restored in part: path, bytes lost (`None`: a directory
    /// whose entries are lost).
    damaged: Vec<(Vec<u8>, Option<u64>)>,
    /// Lost byte ranges of a volume: (offset, length), neighbours merged.
    lost_ranges: Vec<(u64, u64)>,
}

impl Tally {
    fn lost(&mut self, offset: u64, len: u64) {
        match self.lost_ranges.last_mut() {
            Some((at, n)) if *at + *n == offset => *n += len,
            _ => self.lost_ranges.push((offset, len)),
        }
    }
}

/// Runs a tree or volume restore from the server.
///
/// # Errors
/// Connection, server, verification and I/O errors; an `--include` that selects nothing.
pub fn run(g: &Global, args: &PullArgs) -> Result<ExitCode> {
    block_on(async {
        let remote = Remote::connect(g).await?;
        let started = Instant::now();
        let found = super::pull_tar::get_snapshot(&remote, args.snapshot, g.env.as_deref()).await?;
        if found.kind == pb::SourceKind::Tar as i32 {
            return Err(failure(
                "invalid_argument",
                format!(
                    "snapshot {} is a layer: through a server restore it with --tar OUT (extracting it into a directory is local only)",
                    found.id
                ),
            ));
        }
        // The full id: `latest` could name another snapshot by the time the plan is read.
        let (info, kind, target, tally) = fetch(&remote, &found.id, args).await?;
        report(g, &info.id, kind, target, &tally, started);
        Ok(if tally.damaged.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(crate::commands::EXIT_INCOMPLETE)
        })
    })
}

/// Restores snapshot `id` (a full id) as `args` says; returns what the plan described, the
/// kind written, the target and the counts.
async fn fetch<'a>(
    remote: &Remote,
    id: &str,
    args: &PullArgs<'a>,
) -> Result<(pb::SnapshotInfo, &'static str, &'a Path, Tally)> {
    let plan = read_plan(remote, id, None).await?;
    let info = plan.start.snapshot.clone().unwrap_or_default();
    let key: [u8; 32] = plan
        .start
        .verify_key
        .as_slice()
        .try_into()
        .context("the server sent no verify key")?;
    let volume = info.kind == pb::SourceKind::Volume as i32;
    let mut tally = Tally::default();
    let fetcher = Fetcher {
        remote: remote.clone(),
        key,
    };
    let (kind, target) = match (volume, args.dest, args.block) {
        (true, _, Some(out)) => {
            if !args.include.is_empty() {
                bail!(
                    "--include applies to tree snapshots; snapshot {} is a block volume",
                    info.id
                );
            }
            restore_volume(&fetcher, plan.items, out, args.seed, &mut tally).await?;
            ("block", out)
        }
        (true, _, None) => bail!("snapshot {} is a block volume: restore it with --block OUT", info.id),
        (false, Some(dest), _) => {
            let everything = args.include.is_empty();
            let items = select(plan.items, args.include)?;
            let root = plan.root.filter(|_| everything);
            restore_tree(&fetcher, items, root, dest, &mut tally).await?;
            ("tree", dest)
        }
        (false, None, _) => bail!("snapshot {} is a tree: give a target directory", info.id),
    };
    Ok((info, kind, target, tally))
}

/// Restores one part of an environment (a tree into `dest`, or a volume into `block`);
/// returns a line saying what was written.
///
/// # Errors
/// As `amber restore --server`.
pub async fn fetch_part(remote: &Remote, id: &str, dest: Option<&Path>, block: Option<&Path>) -> Result<String> {
    let args = PullArgs {
        snapshot: id,
        dest,
        block,
        seed: None,
        include: &[],
    };
    let (_, kind, target, t) = fetch(remote, id, &args).await?;
    Ok(match kind {
        "block" => format!("{} bytes into {}", t.bytes, target.display()),
        _ => format!("{} files into {}", t.files, target.display()),
    })
}

/// Prints the "restore" (tree) or "restore-block" document of `docs/json.md`.
fn report(g: &Global, id: &str, kind: &str, target: &Path, t: &Tally, started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    for w in &t.warnings {
        eprintln!("warning: {}: {}", display_path(&w.path), w.message);
    }
    for (path, lost) in &t.damaged {
        eprintln!("{}", damaged_line(path, *lost));
    }
    let mut obj = restore_head(id, kind, target);
    let counts = if kind == "block" {
        json!({
            "size": t.bytes,
            "blocks": t.blocks,
            "holes": t.holes,
            "from_repo": t.chunks_fetched,
            "from_seed": t.chunks_seeded,
            "lost_bytes": t.lost_ranges.iter().map(|(_, n)| n).sum::<u64>(),
            "lost_ranges": t.lost_ranges,
        })
    } else {
        json!({
            "files": t.files,
            "dirs": t.dirs,
            "others": t.others,
            "bytes": t.bytes,
            "errors": [],
            "warnings": path_errors(&t.warnings),
            "damaged": damaged_paths(&t.damaged),
        })
    };
    extend(&mut obj, counts);
    let wire = json!({
        "bytes_fetched": t.bytes_fetched,
        "chunks_fetched": t.chunks_fetched,
        "chunks_kept": t.chunks_kept,
        "duration_seconds": secs,
    });
    extend(&mut obj, wire);
    emit(g.json, &Value::Object(obj), || {
        format!(
            "restored {id} into {}: {} fetched ({} chunks), {} chunks already in place, {} from the seed, {secs:.1} s",
            target.display(),
            bytes(t.bytes_fetched),
            t.chunks_fetched,
            t.chunks_kept,
            t.chunks_seeded
        )
    });
}

/// The globs of `--include`, built exactly as the engine builds them: each matched against
/// a path relative to the snapshot root (a leading `/` dropped).
fn include_globs(patterns: &[String]) -> Result<GlobSet> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        let p = p.trim_start_matches('/');
        let glob = Glob::new(p).map_err(|e| failure("invalid_argument", format!("bad --include {p:?}: {e}")))?;
        b.add(glob);
    }
    b.build().map_err(|e| failure("invalid_argument", e.to_string()))
}

/// Whether `rel` or one of its ancestor directories matches.
fn selected(globs: &GlobSet, rel: &[u8]) -> bool {
    let matches = |p: &[u8]| globs.is_match(Path::new(OsStr::from_bytes(p)));
    let ancestors = rel
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'/')
        .filter_map(|(i, _)| rel.get(..i));
    ancestors.chain(std::iter::once(rel)).any(matches)
}

/// Marks the entries `--include` selects, as the engine does: a path matching a glob, and
/// everything below a matching directory. A selected later name of a hard-linked file
/// whose first name is not selected gets the first name's chunks.
///
/// # Errors
/// A bad glob; globs that select nothing.
fn select(items: Vec<Item0>, include: &[String]) -> Result<Vec<Item0>> {
    if include.is_empty() {
        return Ok(items);
    }
    let globs = include_globs(include)?;
    let mut first_chunks: HashMap<(u64, u64), Vec<(pb::ChunkRef, u64)>> = HashMap::new();
    let mut linked: std::collections::HashSet<(u64, u64)> = std::collections::HashSet::new();
    let mut out = Vec::new();
    for mut item in items {
        item.chosen = selected(&globs, &item.rel);
        let key = (item.entry.kind == EntryKind::File && item.entry.nlink > 1)
            .then_some((item.entry.device, item.entry.inode));
        if let Some(k) = key {
            first_chunks.entry(k).or_insert_with(|| item.chunks.clone());
            if item.chosen && linked.insert(k) && item.chunks.is_empty() {
                item.chunks = first_chunks.get(&k).cloned().unwrap_or_default();
            }
        }
        if item.chosen || item.entry.kind == EntryKind::Dir {
            out.push(item);
        }
    }
    if !out.iter().any(|i| i.chosen) {
        return Err(failure(
            "invalid_argument",
            format!(
                "--include {} matches no path of the snapshot: nothing was restored",
                include.join(", ")
            ),
        ));
    }
    Ok(out)
}

async fn read_plan(remote: &Remote, snapshot: &str, env: Option<&str>) -> Result<Plan> {
    let req = pb::ReadPlanRequest {
        vault: remote.vault.clone(),
        snapshot: snapshot.to_string(),
        path: Vec::new(),
        environment: env.unwrap_or_default().to_string(),
    };
    let mut stream = remote
        .restore()
        .read_plan(remote.request(req))
        .await
        .map_err(|s| failed("cannot read the snapshot", &s))?
        .into_inner();
    let mut start = None;
    let mut root = None;
    let mut items: Vec<Item0> = Vec::new();
    while let Some(msg) = stream
        .message()
        .await
        .map_err(|s| failed("reading the plan failed", &s))?
    {
        match msg.item {
            Some(Item::Start(s)) => start = Some(s),
            Some(Item::Entry(e)) if e.path.is_empty() => {
                root = Some(convert::entry(Vec::new(), e.meta.as_ref()).map_err(|s| failed("bad plan entry", &s))?);
            }
            Some(Item::Entry(e)) => items.push(plan_item(e)?),
            Some(Item::Chunks(c)) => add_chunks(items.last_mut(), c)?,
            Some(Item::End(_)) => {
                let start = start.context("the plan has no start")?;
                return Ok(Plan { start, root, items });
            }
            None => {}
        }
    }
    bail!("the plan ended early")
}

fn plan_item(e: pb::PlanEntry) -> Result<Item0> {
    let rel = amber_engine::ops::extract::safe_relative(&e.path)?;
    let name = rel.file_name().map(|n| n.as_bytes().to_vec()).unwrap_or_default();
    let entry = convert::entry(name, e.meta.as_ref()).map_err(|s| failed("bad plan entry", &s))?;
    Ok(Item0 {
        path: rel,
        rel: e.path,
        entry,
        chunks: Vec::new(),
        damaged: e.damaged,
        chosen: true,
    })
}

fn add_chunks(item: Option<&mut Item0>, c: pb::PlanChunks) -> Result<()> {
    let item = item.context("chunks before any entry")?;
    let mut offset = item.chunks.last().map_or(0, |(c, o)| o + u64::from(c.length));
    for chunk in c.chunks {
        let len = u64::from(chunk.length);
        item.chunks.push((chunk, offset));
        offset += len;
    }
    Ok(())
}

async fn restore_tree(
    fetcher: &Fetcher,
    items: Vec<Item0>,
    root: Option<Entry>,
    dest: &Path,
    tally: &mut Tally,
) -> Result<()> {
    std::fs::create_dir_all(dest).with_context(|| format!("cannot create {}", dest.display()))?;
    let chown = fsmeta::can_chown();
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let mut hard_links: Vec<(PathBuf, PathBuf)> = Vec::new();
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    for item in items {
        let path = dest.join(&item.path);
        match item.entry.kind {
            EntryKind::Dir => {
                if item.chosen {
                    std::fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
                    if item.damaged {
                        tally.damaged.push((item.rel.clone(), None));
                    }
                }
                dirs.push(Item0 { path, ..item });
            }
            EntryKind::File => {
                let key = (item.entry.nlink > 1).then_some((item.entry.device, item.entry.inode));
                if let Some(first) = key.and_then(|k| links.get(&k)) {
                    // Linked once the first name's content is in place.
                    hard_links.push((first.clone(), path));
                    continue;
                }
                if let Some(k) = key {
                    links.insert(k, path.clone());
                }
                make_parent(&path)?;
                files.push(Item0 { path, ..item });
            }
            EntryKind::Symlink => {
                make_parent(&path)?;
                let target = std::ffi::OsStr::from_bytes(&item.entry.link_target).to_os_string();
                replace_with(&path, |p| std::os::unix::fs::symlink(&target, p))?;
                warn(tally, &item.rel, fsmeta::apply(&path, &item.entry, chown));
                tally.others += 1;
            }
            EntryKind::Fifo | EntryKind::CharDevice | EntryKind::BlockDevice => {
                make_parent(&path)?;
                replace_with(&path, |p| amber_engine::ops::restore::make_node(&item.entry, p))?;
                warn(tally, &item.rel, fsmeta::apply(&path, &item.entry, chown));
                tally.others += 1;
            }
            EntryKind::Socket => {}
        }
    }
    for window in files.chunks(WINDOW) {
        fill_window(fetcher, window, None, tally).await?;
        for f in window {
            warn(tally, &f.rel, fsmeta::apply(&f.path, &f.entry, chown));
            tally.bytes += f.entry.size;
        }
    }
    for (first, path) in &hard_links {
        replace_with(path, |p| std::fs::hard_link(first, p))?;
        tally.others += 1;
    }
    finish_dirs(tally, &dirs, root.as_ref(), dest, chown);
    // One sync for the whole tree instead of one per file.
    let root = File::open(dest).with_context(|| format!("cannot open {}", dest.display()))?;
    nix::unistd::syncfs(&root).with_context(|| format!("cannot sync {}", dest.display()))?;
    Ok(())
}

/// Applies directory metadata deepest first (selected directories, and ancestors that
/// exist because something below them was restored), then the root entry to DEST.
fn finish_dirs(tally: &mut Tally, dirs: &[Item0], root: Option<&Entry>, dest: &Path, chown: bool) {
    for d in dirs.iter().rev() {
        if d.chosen || std::fs::symlink_metadata(&d.path).is_ok_and(|m| m.is_dir()) {
            tally.dirs += 1;
            warn(tally, &d.rel, fsmeta::apply(&d.path, &d.entry, chown));
        }
    }
    if let Some(root) = root {
        warn(tally, b"", fsmeta::apply(dest, root, chown));
    }
}

fn warn(tally: &mut Tally, rel: &[u8], warnings: Vec<String>) {
    tally.warnings.extend(warnings.into_iter().map(|message| PathError {
        path: rel.to_vec(),
        message,
    }));
}

fn make_parent(path: &Path) -> Result<()> {
    match path.parent() {
        Some(parent) => std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display())),
        None => Ok(()),
    }
}

/// Replaces whatever is at `path` (not a directory) by what `make` creates.
fn replace_with(path: &Path, make: impl FnOnce(&Path) -> std::io::Result<()>) -> Result<()> {
    if std::fs::symlink_metadata(path).is_ok_and(|m| !m.is_dir()) {
        std::fs::remove_file(path).with_context(|| format!("cannot replace {}", path.display()))?;
    }
    make(path).with_context(|| format!("cannot create {}", path.display()))
}

async fn restore_volume(
    fetcher: &Fetcher,
    items: Vec<Item0>,
    out: &Path,
    seed: Option<&Path>,
    tally: &mut Tally,
) -> Result<()> {
    let mut item = items
        .into_iter()
        .find(|i| i.entry.kind == EntryKind::File)
        .context("the volume snapshot has no image entry")?;
    item.path = out.to_path_buf();
    tally.bytes = item.entry.size;
    tally.blocks = item.chunks.len() as u64;
    tally.holes = item
        .chunks
        .iter()
        .filter(|(c, _)| !c.lost && c.id.iter().all(|&b| b == 0))
        .count() as u64;
    let seed = match seed {
        Some(p) => Some(File::open(p).with_context(|| format!("cannot open seed {}", p.display()))?),
        None => None,
    };
    fill_window(fetcher, std::slice::from_ref(&item), seed.as_ref(), tally).await?;
    let image = OpenOptions::new().write(true).open(out)?;
    image
        .sync_all()
        .with_context(|| format!("cannot sync {}", out.display()))
}

/// A chunk to fetch and where it goes.
struct Want {
    id: [u8; 32],
    len: u32,
    file: usize,
    offset: u64,
}

/// Opens the files of a window, keeps what already verifies, takes what the seed has, and
/// fetches the rest.
async fn fill_window(fetcher: &Fetcher, items: &[Item0], seed: Option<&File>, tally: &mut Tally) -> Result<()> {
    let mut open = Vec::new();
    let mut wants = Vec::new();
    for (n, item) in items.iter().enumerate() {
        let file = Arc::new(open_target(&item.path, item.entry.size)?);
        let mut lost = 0u64;
        for (c, offset) in &item.chunks {
            let id: [u8; 32] = c.id.as_slice().try_into().context("a chunk id that is not 32 bytes")?;
            if c.lost && item.damaged {
                // Lost for good (until healed): zeros, named in the report.
                write_sparse(&file, &vec![0u8; c.length as usize], *offset)?;
                lost += u64::from(c.length);
                tally.lost(*offset, u64::from(c.length));
            } else if c.lost {
                bail!(
                    "the server marked a chunk of {} lost in an entry not marked damaged",
                    item.path.display()
                );
            } else if fetcher.in_place(&file, &id, c.length, *offset)? {
                tally.chunks_kept += 1;
            } else if let Some(data) = seed.and_then(|s| fetcher.seeded(s, &id, c.length, *offset)) {
                write_sparse(&file, &data, *offset)?;
                tally.chunks_seeded += 1;
            } else if id == [0u8; 32] {
                // A hole over other bytes (a resumed target): zeros, left unallocated where
                // the file already has none.
                write_sparse(&file, &vec![0u8; c.length as usize], *offset)?;
            } else {
                wants.push(Want {
                    id,
                    len: c.length,
                    file: n,
                    offset: *offset,
                });
            }
        }
        open.push(file);
        tally.files += 1;
        if item.damaged {
            tally.damaged.push((item.rel.clone(), Some(lost)));
        }
    }
    fetcher.fetch_all(&open, items, wants, tally).await?;
    Ok(())
}

/// Blocks written at a time; an all-zero block is written only over bytes that are not
/// zero, so sparse files stay sparse (as the engine restores them).
const SPARSE_BLOCK: usize = 4096;

/// Writes `data` at `offset`, skipping all-zero blocks where the file already reads zeros.
fn write_sparse(file: &File, data: &[u8], offset: u64) -> std::io::Result<()> {
    let mut existing = [0u8; SPARSE_BLOCK];
    for (i, block) in data.chunks(SPARSE_BLOCK).enumerate() {
        let at = offset + (i * SPARSE_BLOCK) as u64;
        if block.iter().any(|&b| b != 0) {
            file.write_all_at(block, at)?;
            continue;
        }
        let old = existing.get_mut(..block.len()).unwrap_or_default();
        let read = file.read_at(old, at)?;
        if old.get(..read).unwrap_or_default().iter().any(|&b| b != 0) {
            file.write_all_at(block, at)?;
        }
    }
    Ok(())
}

fn open_target(path: &Path, size: u64) -> Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let meta = file.metadata()?;
    if !meta.file_type().is_block_device() && meta.len() != size {
        // A different length: nothing in it can be trusted to line up; start afresh.
        file.set_len(0)?;
        file.set_len(size)?;
    }
    Ok(file)
}

/// Fetches and verifies chunks.
struct Fetcher {
    remote: Remote,
    key: [u8; 32],
}

impl Fetcher {
    /// Whether the bytes at `offset` already are this chunk (a hole: all zeros).
    fn in_place(&self, file: &File, id: &[u8; 32], len: u32, offset: u64) -> Result<bool> {
        let mut buf = vec![0u8; len as usize];
        if file.read_exact_at(&mut buf, offset).is_err() {
            return Ok(false);
        }
        Ok(self.verifies(id, &buf))
    }

    fn verifies(&self, id: &[u8; 32], data: &[u8]) -> bool {
        if *id == [0u8; 32] {
            return data.iter().all(|&b| b == 0);
        }
        blake3::keyed_hash(&self.key, data).as_bytes() == id
    }

    fn seeded(&self, seed: &File, id: &[u8; 32], len: u32, offset: u64) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; len as usize];
        seed.read_exact_at(&mut buf, offset).ok()?;
        self.verifies(id, &buf).then_some(buf)
    }

    async fn fetch_all(&self, files: &[Arc<File>], items: &[Item0], wants: Vec<Want>, tally: &mut Tally) -> Result<()> {
        let mut tasks = JoinSet::new();
        let mut groups = wants.into_iter().filter(|w| w.id != [0u8; 32]).collect::<Vec<_>>();
        let mut pending: Vec<Vec<Want>> = Vec::new();
        while !groups.is_empty() {
            let rest = groups.split_off(groups.len().min(GROUP));
            pending.push(std::mem::replace(&mut groups, rest));
        }
        for group in pending {
            if tasks.len() >= PARALLEL {
                self.collect(&mut tasks, tally).await?;
            }
            let targets = group
                .iter()
                .map(|w| match (files.get(w.file), items.get(w.file)) {
                    (Some(f), Some(i)) => Ok((f.clone(), i.path.clone())),
                    _ => Err(anyhow::anyhow!("a chunk without its file")),
                })
                .collect::<Result<Vec<(Arc<File>, PathBuf)>>>()?;
            tasks.spawn(fetch_group(self.remote.clone(), self.key, group, targets));
        }
        while !tasks.is_empty() {
            self.collect(&mut tasks, tally).await?;
        }
        Ok(())
    }

    async fn collect(&self, tasks: &mut JoinSet<Result<(u64, u64)>>, tally: &mut Tally) -> Result<()> {
        if let Some(done) = tasks.join_next().await {
            let (chunks, fetched) = done.context("a fetch task stopped")??;
            tally.chunks_fetched += chunks;
            tally.bytes_fetched += fetched;
        }
        Ok(())
    }
}

/// Fetches one group of chunks, verifies each and writes it in place.
async fn fetch_group(
    remote: Remote,
    key: [u8; 32],
    group: Vec<Want>,
    targets: Vec<(Arc<File>, PathBuf)>,
) -> Result<(u64, u64)> {
    let req = pb::ReadChunksRequest {
        vault: remote.vault.clone(),
        ids: group.iter().map(|w| w.id.to_vec()).collect(),
    };
    let mut stream = remote
        .restore()
        .read_chunks(remote.request(req))
        .await
        .map_err(|s| failed("cannot read chunks", &s))?
        .into_inner();
    let mut buf: Vec<u8> = Vec::new();
    let mut fetched = 0u64;
    let mut done = 0u64;
    while let Some(piece) = stream
        .message()
        .await
        .map_err(|s| failed("reading chunks failed", &s))?
    {
        let i = piece.index as usize;
        let (Some(want), Some((file, path))) = (group.get(i), targets.get(i)) else {
            bail!("the server sent a chunk that was not asked for");
        };
        if piece.offset as usize != buf.len() || buf.len() + piece.data.len() > want.len as usize {
            bail!("the server sent chunk pieces out of order");
        }
        buf.extend_from_slice(&piece.data);
        if !piece.last {
            continue;
        }
        let data = std::mem::take(&mut buf);
        if data.len() != want.len as usize || blake3::keyed_hash(&key, &data).as_bytes() != &want.id {
            let why = format!(
                "chunk {} for {} failed verification: not written",
                hex::encode(want.id),
                path.display()
            );
            return Err(failure("corrupt", why));
        }
        write_sparse(file, &data, want.offset).with_context(|| format!("cannot write {}", path.display()))?;
        fetched += data.len() as u64;
        done += 1;
    }
    if done != group.len() as u64 {
        bail!("the server sent {done} of {} chunks", group.len());
    }
    Ok((done, fetched))
}
