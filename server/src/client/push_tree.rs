//! Pushing a directory tree: entries in batches, then only the files the server asks for.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{ErrorKind, Read};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use amber_engine::format::tree::EntryKind;
use amber_engine::ops::exclude::Excludes;
use amber_engine::ops::fsmeta::{NameCache, entry_from};
use amber_engine::ops::ingest::Sources;
use amber_engine::ops::{display_path, join_rel};
use amber_proto::v1 as pb;
use amber_proto::v1::push_request::Frame;
use amber_proto::v1::push_response::Frame as Answer;
use anyhow::{Context, Result, bail};

use super::push::{FRAME, Outcome, PushStream, header};
use crate::cli::PushArgs;
use crate::client::Remote;
use amber_server::serve::convert;

/// Entries per batch (the server's cap).
const BATCH: usize = 1024;
/// Metadata bytes per batch, well under the 4 MiB message cap.
const BATCH_BYTES: usize = 2 * 1024 * 1024;

/// Pushes the tree at `paths`: one directory (whose own metadata becomes the snapshot's
/// root entry), or several paths under a root made for the snapshot, each under its own
/// name, exactly as `amber snapshot` stores them.
///
/// # Errors
/// An unreadable root, or the server's refusal.
pub async fn push(remote: &Remote, args: &PushArgs, env: Option<&str>, paths: &[PathBuf]) -> Result<Outcome> {
    let started = Instant::now();
    let roots = Sources::new(paths)?;
    let exclude = Excludes::load(&args.snap.exclude, &args.snap.exclude_file)?;
    let source = pb::push_header::Source::Tree(pb::TreeHeader {
        root: root_meta(&roots)?,
    });
    let h = header(remote, args, env, roots.source_path(), source);
    let (mut stream, _) = PushStream::open(remote, h).await?;
    let mut walker = Walker::new(&roots, exclude)?;
    let mut bytes_read = 0u64;
    let mut skipped_total = 0u64;
    loop {
        let batch = walker.batch();
        skipped_total += batch.msg.skipped.len() as u64;
        let last = batch.msg.last;
        stream.send(Frame::Entries(batch.msg)).await?;
        let wanted = match stream.recv().await? {
            Answer::FilesWanted(w) => w.entries,
            _ => bail!("the server answered a batch out of protocol"),
        };
        for index in wanted {
            let (path, size) = batch
                .files
                .get(&index)
                .context("the server asked for a file not in the batch")?;
            bytes_read += send_file(&mut stream, index, path, *size).await?;
        }
        if last {
            break;
        }
    }
    let finish = pb::Finish {
        count: walker.next_index,
        digest: String::new(),
    };
    let (committed, bytes_sent) = stream.finish(finish).await?;
    Ok(Outcome {
        committed,
        bytes_read,
        bytes_sent,
        skipped: skipped_total,
        started,
    })
}

/// Sends one file's content, at most the `size` its entry declared (a file that grew is
/// sent as it was listed, as `amber snapshot` stores it); runs of zeros go as FileZeros,
/// so holes do not cross the wire. A file that cannot be read is reported, not fatal.
async fn send_file(stream: &mut PushStream, entry: u64, path: &Path, size: u64) -> Result<u64> {
    let opened = amber_engine::ops::ingest::open_regular(path);
    let mut file = match opened {
        Ok(f) => f,
        Err(e) => return end_with_error(stream, entry, 0, &e).await.map(|()| 0),
    };
    let mut offset = 0u64;
    let mut zeros = 0u64;
    let mut buf = vec![0u8; FRAME];
    while offset + zeros < size {
        let want = usize::try_from((size - offset - zeros).min(FRAME as u64)).unwrap_or(FRAME);
        let n = match file.read(buf.get_mut(..want).unwrap_or_default()) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return end_with_error(stream, entry, offset, &e).await.map(|()| offset),
        };
        let data = buf.get(..n).unwrap_or_default();
        if data.iter().all(|&b| b == 0) {
            zeros += n as u64;
            continue;
        }
        offset = send_zeros(stream, entry, offset, std::mem::take(&mut zeros)).await?;
        stream
            .send(Frame::FileData(pb::FileData {
                entry,
                offset,
                data: data.to_vec(),
            }))
            .await?;
        offset += n as u64;
    }
    offset = send_zeros(stream, entry, offset, zeros).await?;
    let end = pb::FileEnd {
        entry,
        size: offset,
        error: String::new(),
    };
    stream.send(Frame::FileEnd(end)).await?;
    Ok(offset)
}

/// Sends a run of `len` zero bytes at `offset` (nothing when 0); returns the new offset.
async fn send_zeros(stream: &mut PushStream, entry: u64, offset: u64, len: u64) -> Result<u64> {
    if len > 0 {
        stream
            .send(Frame::FileZeros(pb::FileZeros {
                entry,
                offset,
                length: len,
            }))
            .await?;
    }
    Ok(offset + len)
}

async fn end_with_error(stream: &mut PushStream, entry: u64, size: u64, e: &std::io::Error) -> Result<()> {
    let end = pb::FileEnd {
        entry,
        size,
        error: format!("cannot read: {e}"),
    };
    stream.send(Frame::FileEnd(end)).await
}

/// One batch, and where its regular files are with their declared sizes.
struct Batch {
    msg: pb::TreeEntries,
    files: HashMap<u64, (PathBuf, u64)>,
}

/// The root directory's own metadata (none for a root made for several paths).
fn root_meta(sources: &Sources) -> Result<Option<pb::EntryMeta>> {
    let Sources::Dir(dir) = sources else { return Ok(None) };
    let meta = std::fs::symlink_metadata(dir).with_context(|| format!("cannot stat {}", dir.display()))?;
    let entry = entry_from(b"", dir, &meta, &NameCache::default())
        .with_context(|| format!("cannot read the metadata of {}", dir.display()))?;
    Ok(Some(convert::meta(&entry)))
}

/// A directory being listed: its children as (path, name).
struct Dir {
    index: u64,
    rel: Vec<u8>,
    children: std::vec::IntoIter<(PathBuf, OsString)>,
}

/// Walks the tree depth-first in the order the server expects: a directory before its
/// contents, names in byte order, excluded paths left out.
struct Walker {
    stack: Vec<Dir>,
    names: NameCache,
    exclude: Excludes,
    /// The root's entries are the paths given (several paths pushed).
    several: bool,
    next_index: u64,
}

impl Walker {
    fn new(roots: &Sources, exclude: Excludes) -> Result<Self> {
        let children: Vec<(PathBuf, OsString)> = match roots {
            Sources::Dir(root) => {
                let names = sorted_names(root).with_context(|| format!("cannot list {}", root.display()))?;
                names.into_iter().map(|n| (root.join(&n), n)).collect()
            }
            Sources::Several(paths) => paths
                .iter()
                .map(|(p, name)| (p.clone(), OsString::from_vec(name.clone())))
                .collect(),
        };
        Ok(Walker {
            stack: vec![Dir {
                index: 0,
                rel: Vec::new(),
                children: children.into_iter(),
            }],
            names: NameCache::default(),
            exclude,
            several: matches!(roots, Sources::Several(_)),
            next_index: 0,
        })
    }

    fn batch(&mut self) -> Batch {
        let mut batch = Batch {
            msg: pb::TreeEntries::default(),
            files: HashMap::new(),
        };
        let mut size = 0usize;
        while batch.msg.entries.len() < BATCH && batch.msg.skipped.len() < BATCH && size < BATCH_BYTES {
            let Some(entry) = self.next(&mut batch) else {
                batch.msg.last = true;
                break;
            };
            size += prost::Message::encoded_len(&entry);
            batch.msg.entries.push(entry);
        }
        batch
    }

    fn next(&mut self, batch: &mut Batch) -> Option<pb::TreeEntry> {
        loop {
            let top = self.stack.last_mut()?;
            let Some((path, name)) = top.children.next() else {
                self.stack.pop();
                continue;
            };
            let parent = top.index;
            let rel = join_rel(&top.rel, name.as_bytes());
            // Paths given on the command line are never excluded, what they hold may be
            // (as `amber snapshot` does).
            let given = parent == 0 && self.several;
            if !given && self.exclude.excludes(&rel, name.as_bytes()) {
                continue;
            }
            let skip = |batch: &mut Batch, reason: String| {
                batch.msg.skipped.push(pb::SkippedPath {
                    path: display_path(&rel),
                    reason,
                });
            };
            let meta = match std::fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => {
                    skip(batch, format!("cannot stat: {e}"));
                    continue;
                }
            };
            let entry = match entry_from(name.as_bytes(), &path, &meta, &self.names) {
                Ok(e) => e,
                Err(e) => {
                    skip(batch, format!("cannot read metadata: {e}"));
                    continue;
                }
            };
            self.next_index += 1;
            let index = self.next_index;
            match entry.kind {
                EntryKind::File => {
                    batch.files.insert(index, (path.clone(), entry.size));
                }
                EntryKind::Dir => {
                    let names = sorted_names(&path).unwrap_or_else(|e| {
                        skip(batch, format!("cannot list directory: {e}"));
                        Vec::new()
                    });
                    let children = names.into_iter().map(|n| (path.join(&n), n)).collect::<Vec<_>>();
                    self.stack.push(Dir {
                        index,
                        rel,
                        children: children.into_iter(),
                    });
                }
                _ => {}
            }
            return Some(pb::TreeEntry {
                parent,
                name: entry.name.clone(),
                meta: Some(convert::meta(&entry)),
            });
        }
    }
}

fn sorted_names(path: &Path) -> std::io::Result<Vec<OsString>> {
    let mut names = std::fs::read_dir(path)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<Vec<_>>>()?;
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}
