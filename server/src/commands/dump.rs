//! `dump`: one file's content on stdout, every chunk verified before it is written;
//! locally, and through a server (`ReadPlan` of the file's directory, then `ReadChunks`,
//! each chunk checked against its id with the plan's verify key as `restore` does).

use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

use amber_engine::format::snapshot::SourceKind;
use amber_engine::format::tree::{Entry, EntryKind};
use amber_engine::id::{SnapshotId, TreeId};
use amber_engine::ops::display_path;
use amber_engine::ops::members::layer_members;
use amber_engine::ops::tar::write_content;
use amber_engine::ops::walk::find_dir;
use amber_engine::repo::Repository;
use amber_proto::v1 as pb;
use amber_proto::v1::plan_message::Item;
use anyhow::{Context, Result};
use serde_json::{Map, json};

use crate::cli::Global;
use crate::client::{Remote, block_on, failed};
use crate::context;
use crate::output::{emit, failure, put_path, stdout_is_data};
use amber_server::serve::convert;

/// Chunks asked for per ReadChunks call (at most 16 × 4 MiB held at once).
const GROUP: usize = 16;

/// `path` as the snapshot names it: components without empty ones and `.`.
fn normalise(path: &[u8]) -> Vec<u8> {
    let parts: Vec<&[u8]> = path
        .split(|&b| b == b'/')
        .filter(|p| !p.is_empty() && *p != b".")
        .collect();
    parts.join(&b'/')
}

/// Refuses what is not a regular file, saying what it is.
fn check_file(e: &Entry, rel: &[u8]) -> Result<()> {
    let shown = display_path(rel);
    match e.kind {
        EntryKind::File => Ok(()),
        EntryKind::Dir => Err(failure(
            "invalid_argument",
            format!("/{shown} is a directory: dump writes one file; restore a directory with --include"),
        )),
        EntryKind::Symlink => Err(failure(
            "invalid_argument",
            format!(
                "/{shown} is a symlink to {}: dump its target instead",
                display_path(&e.link_target)
            ),
        )),
        other => Err(failure(
            "invalid_argument",
            format!("/{shown} is not a regular file (type {})", other.letter()),
        )),
    }
}

fn no_such_path(rel: &[u8]) -> anyhow::Error {
    amber_engine::error::Error::NoSuchPath(display_path(rel)).into()
}

/// Prints the `dump` document (on stderr: stdout holds the content) under `--json`.
fn report(g: &Global, id: &str, rel: &[u8], written: u64, started: Instant) {
    if !g.json {
        return;
    }
    let mut obj = Map::new();
    obj.insert("snapshot".into(), json!(id));
    put_path(&mut obj, "path", rel);
    obj.insert("bytes".into(), json!(written));
    obj.insert("duration_seconds".into(), json!(started.elapsed().as_secs_f64()));
    emit(true, &serde_json::Value::Object(obj), String::new);
}

/// `amber dump` on the local repository.
///
/// # Errors
/// An unknown snapshot or path, a path that is not a regular file, store and corruption
/// errors, a closed stdout.
pub fn local(g: &Global, name: &str, path: &[u8]) -> Result<ExitCode> {
    let started = Instant::now();
    let repo = context::open_read(g)?;
    let (id, snap) = repo.resolve_snapshot(name, g.env.as_deref())?;
    let rel = normalise(path);
    let entry = match snap.source {
        SourceKind::TarLayer => layer_file(&repo, id, &rel)?,
        SourceKind::Tree | SourceKind::BlockVolume => tree_entry(&repo, TreeId::new(snap.root), &rel)?,
        SourceKind::Image => amber_engine::ops::image::view::listing(&repo, id, &snap)?
            .into_iter()
            .find(|(p, _)| *p == rel)
            .map(|(_, e)| e)
            .ok_or_else(|| anyhow::anyhow!("{} is not in image {id}", display_path(&rel)))?,
        SourceKind::Environment => {
            anyhow::bail!("snapshot {id} is an environment: dump from one of its parts (`amber envs` lists them)")
        }
    };
    if snap.source == SourceKind::Image
        && entry.kind == amber_engine::format::tree::EntryKind::File
        && matches!(entry.content, amber_engine::format::tree::Content::Tree(_))
    {
        anyhow::bail!(
            "{} is a layer of image {id}: restore the image with --image OUT, or dump a file below it",
            display_path(&rel)
        );
    }
    check_file(&entry, &rel)?;
    stdout_is_data();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    let written = write_content(&repo, &entry.content, &mut out)?;
    out.flush().context("cannot write to stdout")?;
    report(g, &id.to_hex(), &rel, written, started);
    Ok(ExitCode::SUCCESS)
}

/// The entry at `rel` in a tree (the root itself for an empty path).
fn tree_entry(repo: &Repository, root: TreeId, rel: &[u8]) -> Result<Entry> {
    if rel.is_empty() {
        return Ok(Entry::new(Vec::new(), EntryKind::Dir));
    }
    let (parent, name) = match rel.iter().rposition(|&b| b == b'/') {
        Some(i) => (rel.get(..i).unwrap_or_default(), rel.get(i + 1..).unwrap_or_default()),
        None => (&b""[..], rel),
    };
    let node = repo.load_tree(find_dir(repo, root, parent)?)?;
    node.get(name).cloned().ok_or_else(|| no_such_path(rel))
}

/// The member at `rel` of a layer; a hard link is followed to the member it names.
fn layer_file(repo: &Repository, id: SnapshotId, rel: &[u8]) -> Result<Entry> {
    let members = layer_members(repo, id)?;
    let find = |p: &[u8]| members.iter().rev().find(|(path, _)| path == p).map(|(_, e)| e.clone());
    let entry = find(rel).ok_or_else(|| no_such_path(rel))?;
    let hard_link = entry.kind == EntryKind::File && !entry.link_target.is_empty();
    if hard_link {
        return find(&entry.link_target).ok_or_else(|| no_such_path(&entry.link_target));
    }
    Ok(entry)
}

/// A file found in a plan, with its chunks.
struct Planned {
    entry: Entry,
    chunks: Vec<pb::ChunkRef>,
}

/// `amber dump --server`.
///
/// # Errors
/// Connection and server errors, an unknown path, a path that is not a regular file, a
/// chunk that fails verification, a closed stdout.
pub fn remote(g: &Global, name: &str, path: &[u8]) -> Result<ExitCode> {
    let started = Instant::now();
    let rel = normalise(path);
    block_on(async {
        let remote = Remote::connect(g).await?;
        let info = crate::client::pull_tar::get_snapshot(&remote, name, g.env.as_deref()).await?;
        if info.kind == pb::SourceKind::Tar as i32 {
            crate::client::local_only("dump of a layer member")?;
        }
        let (parent, file_name) = match rel.iter().rposition(|&b| b == b'/') {
            Some(i) => (rel.get(..i).unwrap_or_default(), rel.get(i + 1..).unwrap_or_default()),
            None => (&b""[..], rel.as_slice()),
        };
        if rel.is_empty() {
            check_file(&Entry::new(Vec::new(), EntryKind::Dir), &rel)?;
        }
        let (key, found) = plan_of(&remote, &info.id, parent, file_name).await?;
        let mut file = found.ok_or_else(|| no_such_path(&rel))?;
        check_file(&file.entry, &rel)?;
        if file.chunks.is_empty() && file.entry.size > 0 {
            // A later name of a hard-linked file: its chunks follow the first name.
            file.chunks = first_name_chunks(&remote, &info.id, &file.entry).await?;
        }
        stdout_is_data();
        let mut out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
        let written = write_chunks(&remote, &key, &file.chunks, &mut out).await?;
        out.flush().context("cannot write to stdout")?;
        report(g, &info.id, &rel, written, started);
        Ok(ExitCode::SUCCESS)
    })
}

async fn plan_stream(remote: &Remote, id: &str, dir: &[u8]) -> Result<tonic::Streaming<pb::PlanMessage>> {
    let req = pb::ReadPlanRequest {
        vault: remote.vault.clone(),
        snapshot: id.to_string(),
        path: dir.to_vec(),
        environment: String::new(),
    };
    Ok(remote
        .restore()
        .read_plan(remote.request(req))
        .await
        .map_err(|s| failed("cannot read the snapshot", &s))?
        .into_inner())
}

/// The verify key and the entry named `name` directly in directory `dir`, with its chunks.
/// The plan is read only until that entry's chunks end.
async fn plan_of(remote: &Remote, id: &str, dir: &[u8], name: &[u8]) -> Result<([u8; 32], Option<Planned>)> {
    let mut stream = plan_stream(remote, id, dir).await?;
    let mut key = None;
    let mut found: Option<Planned> = None;
    while let Some(msg) = stream
        .message()
        .await
        .map_err(|s| failed("reading the plan failed", &s))?
    {
        match msg.item {
            Some(Item::Start(s)) => key = Some(verify_key(&s)?),
            Some(Item::Entry(_)) if found.is_some() => break,
            Some(Item::Entry(e)) if e.path == name => {
                let entry = convert::entry(name.to_vec(), e.meta.as_ref()).map_err(|s| failed("bad plan entry", &s))?;
                found = Some(Planned {
                    entry,
                    chunks: Vec::new(),
                });
            }
            Some(Item::Chunks(c)) => {
                if let Some(f) = found.as_mut() {
                    f.chunks.extend(c.chunks);
                }
            }
            Some(Item::End(_)) => break,
            _ => {}
        }
    }
    Ok((key.context("the plan has no start")?, found))
}

fn verify_key(s: &pb::PlanStart) -> Result<[u8; 32]> {
    s.verify_key
        .as_slice()
        .try_into()
        .map_err(|_| failure("internal", "the server sent no verify key"))
}

/// The chunks of the first name of the hard-linked file `e` (same device and inode), from
/// the whole snapshot's plan.
async fn first_name_chunks(remote: &Remote, id: &str, e: &Entry) -> Result<Vec<pb::ChunkRef>> {
    let mut stream = plan_stream(remote, id, b"").await?;
    let mut taking = false;
    let mut chunks = Vec::new();
    while let Some(msg) = stream
        .message()
        .await
        .map_err(|s| failed("reading the plan failed", &s))?
    {
        match msg.item {
            Some(Item::Entry(_)) if taking => break,
            Some(Item::Entry(p)) => {
                let m = p.meta.unwrap_or_default();
                taking = m.kind == pb::EntryKind::File as i32 && m.inode == e.inode && m.device == e.device;
            }
            Some(Item::Chunks(c)) if taking => chunks.extend(c.chunks),
            Some(Item::End(_)) => break,
            _ => {}
        }
    }
    Ok(chunks)
}

fn is_hole(c: &pb::ChunkRef) -> bool {
    c.id.iter().all(|&b| b == 0)
}

/// Fetches the chunks in order, a group at a time, and writes each once it verifies;
/// holes are written as zeros. Returns the bytes written.
async fn write_chunks(remote: &Remote, key: &[u8; 32], chunks: &[pb::ChunkRef], out: &mut dyn Write) -> Result<u64> {
    let mut written = 0u64;
    for group in chunks.chunks(GROUP) {
        let wanted: Vec<&pb::ChunkRef> = group.iter().filter(|c| !is_hole(c)).collect();
        let mut fetched = fetch_verified(remote, key, &wanted).await?.into_iter();
        for c in group {
            let data = if is_hole(c) {
                vec![0u8; c.length as usize]
            } else {
                fetched.next().context("a chunk went missing")?
            };
            out.write_all(&data).context("cannot write to stdout")?;
            written += data.len() as u64;
        }
    }
    Ok(written)
}

/// The contents of `wanted`, in order, each checked against its id.
async fn fetch_verified(remote: &Remote, key: &[u8; 32], wanted: &[&pb::ChunkRef]) -> Result<Vec<Vec<u8>>> {
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let req = pb::ReadChunksRequest {
        vault: remote.vault.clone(),
        ids: wanted.iter().map(|c| c.id.clone()).collect(),
    };
    let mut stream = remote
        .restore()
        .read_chunks(remote.request(req))
        .await
        .map_err(|s| failed("cannot read chunks", &s))?
        .into_inner();
    let mut bufs: Vec<Vec<u8>> = vec![Vec::new(); wanted.len()];
    let mut done = 0usize;
    while let Some(piece) = stream
        .message()
        .await
        .map_err(|s| failed("reading chunks failed", &s))?
    {
        let i = piece.index as usize;
        let (Some(want), Some(buf)) = (wanted.get(i), bufs.get_mut(i)) else {
            return Err(failure("internal", "the server sent a chunk that was not asked for"));
        };
        if piece.offset as usize != buf.len() || buf.len() + piece.data.len() > want.length as usize {
            return Err(failure("internal", "the server sent chunk pieces out of order"));
        }
        buf.extend_from_slice(&piece.data);
        if piece.last {
            if buf.len() != want.length as usize || blake3::keyed_hash(key, buf).as_bytes().as_slice() != want.id {
                let why = format!("chunk {} failed verification: not written", hex::encode(&want.id));
                return Err(failure("corrupt", why));
            }
            done += 1;
        }
    }
    if done != wanted.len() {
        return Err(failure(
            "internal",
            format!("the server sent {done} of {} chunks", wanted.len()),
        ));
    }
    Ok(bufs)
}
