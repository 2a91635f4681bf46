//! Pushing a directory tree: entries in batches, then only the files the server asks for.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::{ErrorKind, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use amber_engine::format::tree::EntryKind;
use amber_engine::ops::fsmeta::{NameCache, entry_from};
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

/// Pushes the tree at `dir`.
///
/// # Errors
/// An unreadable root, or the server's refusal.
pub async fn push(remote: &Remote, args: &PushArgs, env: Option<&str>, dir: &Path) -> Result<Outcome> {
    let started = Instant::now();
    let root = std::fs::canonicalize(dir).with_context(|| format!("cannot open {}", dir.display()))?;
    if !root.is_dir() {
        bail!("{} is not a directory", root.display());
    }
    let source = pb::push_header::Source::Tree(pb::TreeHeader {});
    let h = header(remote, args, env, root.to_string_lossy().into_owned(), source);
    let (mut stream, _) = PushStream::open(remote, h).await?;
    let mut walker = Walker::new(&root)?;
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
            let path = batch
                .files
                .get(&index)
                .context("the server asked for a file not in the batch")?;
            bytes_read += send_file(&mut stream, index, path).await?;
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

/// Sends one file's content; a file that cannot be read is reported, not fatal.
async fn send_file(stream: &mut PushStream, entry: u64, path: &Path) -> Result<u64> {
    let opened = File::options().read(true).custom_flags(libc::O_NOFOLLOW).open(path);
    let mut file = match opened {
        Ok(f) => f,
        Err(e) => return end_with_error(stream, entry, 0, &e).await.map(|()| 0),
    };
    let mut offset = 0u64;
    let mut buf = vec![0u8; FRAME];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return end_with_error(stream, entry, offset, &e).await.map(|()| offset),
        };
        let data = buf.get(..n).unwrap_or_default().to_vec();
        stream
            .send(Frame::FileData(pb::FileData { entry, offset, data }))
            .await?;
        offset += n as u64;
    }
    let end = pb::FileEnd {
        entry,
        size: offset,
        error: String::new(),
    };
    stream.send(Frame::FileEnd(end)).await?;
    Ok(offset)
}

async fn end_with_error(stream: &mut PushStream, entry: u64, size: u64, e: &std::io::Error) -> Result<()> {
    let end = pb::FileEnd {
        entry,
        size,
        error: format!("cannot read: {e}"),
    };
    stream.send(Frame::FileEnd(end)).await
}

/// One batch and where its regular files are.
struct Batch {
    msg: pb::TreeEntries,
    files: HashMap<u64, PathBuf>,
}

/// A directory being listed.
struct Dir {
    index: u64,
    path: PathBuf,
    rel: String,
    names: std::vec::IntoIter<OsString>,
}

/// Walks the tree depth-first in the order the server expects: a directory before its
/// contents, names in byte order.
struct Walker {
    stack: Vec<Dir>,
    names: NameCache,
    next_index: u64,
}

impl Walker {
    fn new(root: &Path) -> Result<Self> {
        let names = sorted_names(root).with_context(|| format!("cannot list {}", root.display()))?;
        Ok(Walker {
            stack: vec![Dir {
                index: 0,
                path: root.to_path_buf(),
                rel: String::new(),
                names: names.into_iter(),
            }],
            names: NameCache::default(),
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
            let Some(name) = top.names.next() else {
                self.stack.pop();
                continue;
            };
            let (parent, path) = (top.index, top.path.join(&name));
            let rel = if top.rel.is_empty() {
                name.to_string_lossy().into_owned()
            } else {
                format!("{}/{}", top.rel, name.to_string_lossy())
            };
            let skip = |batch: &mut Batch, reason: String| {
                batch.msg.skipped.push(pb::SkippedPath {
                    path: rel.clone(),
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
                    batch.files.insert(index, path.clone());
                }
                EntryKind::Dir => {
                    let names = sorted_names(&path).unwrap_or_else(|e| {
                        skip(batch, format!("cannot list directory: {e}"));
                        Vec::new()
                    });
                    self.stack.push(Dir {
                        index,
                        path,
                        rel,
                        names: names.into_iter(),
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
