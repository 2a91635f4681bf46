//! Copying snapshots into another vault (another bucket or region, a local directory, or
//! another lab's vault): each snapshot's data is read, verified, and stored again in the
//! target under its keys. Chunk ids are keyed per vault, so nothing can be copied as is;
//! the target's deduplication stores only what it lacks. `amber copy` and `amber share`
//! (through a server) both use this.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::format::snapshot::{Snapshot, SourceKind};
use crate::format::tree::{Content, Entry, EntryKind};
use crate::id::{SnapshotId, TreeId};
use crate::ops::assemble::{Added, TreeAssembler};
use crate::ops::content::for_each_chunk;
use crate::ops::tar::{TarOptions, restore_tar, snapshot_tar};
use crate::ops::volume_build::VolumeBuilder;
use crate::ops::walk::walk;
use crate::ops::{Labels, display_path};
use crate::repo::Repository;
use crate::repo::writer::BlobWriter;

/// Metadata key a copy records its origin under (`<source vault id>:<snapshot id>`).
pub const COPIED_FROM_KEY: &str = "amber.copied_from";
/// Metadata key a share records its origin under (`<vault name>:<snapshot id>`).
pub const SHARED_FROM_KEY: &str = "amber.shared_from";

/// The labels of `snap` for its copy: the same environment, lab, researcher, tags, host and
/// time, its metadata without the engine's own `oci.` pairs and origin keys (the copy
/// records them again), plus `origin` when given.
pub fn labels_of(snap: &Snapshot, origin: Option<(&str, String)>) -> Labels {
    let mut metadata: Vec<(String, String)> = snap
        .metadata
        .iter()
        .filter(|(k, _)| !k.starts_with("oci.") && k != COPIED_FROM_KEY && k != SHARED_FROM_KEY)
        .cloned()
        .collect();
    if let Some((key, value)) = origin {
        metadata.push((key.to_string(), value));
    }
    Labels {
        environment: snap.environment.clone(),
        lab: snap.lab.clone(),
        researcher: snap.researcher.clone(),
        tags: snap.tags.clone(),
        metadata,
        hostname: Some(snap.hostname.clone()),
        time_ns: Some(snap.time_ns),
    }
}

/// Copies snapshot `id` of `src` into `dst` with `labels`; returns the new snapshot's id
/// and the bytes of content copied.
///
/// # Errors
/// [`Error::InvalidArgument`] for images and environments (not yet copied); read errors
/// naming the damaged blob (nothing is committed then); store errors.
pub fn copy_snapshot(src: &Repository, dst: &Repository, id: SnapshotId, labels: &Labels) -> Result<(SnapshotId, u64)> {
    let snap = src.load_snapshot(id)?;
    match snap.source {
        SourceKind::Tree => copy_tree(src, dst, &snap, labels),
        SourceKind::TarLayer => copy_layer(src, dst, id, &snap, labels.clone()),
        SourceKind::BlockVolume => copy_volume(src, dst, &snap, labels),
        SourceKind::Image | SourceKind::Environment => Err(Error::InvalidArgument(format!(
            "snapshot {id} is a {} snapshot; copying those is not supported yet",
            snap.source.name()
        ))),
    }
}

fn copy_tree(src: &Repository, dst: &Repository, snap: &Snapshot, labels: &Labels) -> Result<(SnapshotId, u64)> {
    let writer = BlobWriter::new(dst)?;
    let mut asm = TreeAssembler::new(&writer, None)?;
    if let Some(root) = &snap.root_entry {
        asm.set_root_entry(root.clone())?;
    }
    let mut dirs: HashMap<Vec<u8>, u64> = HashMap::new();
    let mut next = 0u64;
    walk(src, TreeId::new(snap.root), b"", &mut |path, e| {
        next += 1;
        let parent = match path.iter().rposition(|&b| b == b'/') {
            Some(slash) => *dirs
                .get(path.get(..slash).unwrap_or_default())
                .ok_or_else(|| Error::Pipeline(format!("no directory for {}", display_path(path))))?,
            None => 0,
        };
        if e.kind == EntryKind::Dir {
            dirs.insert(path.to_vec(), next);
        }
        let mut bare = e.clone();
        bare.content = Content::None;
        if let Added::Wanted(i) = asm.add(parent, bare)? {
            copy_content(src, &mut asm, i, e)?;
        }
        Ok(())
    })?;
    for path in &snap.skipped_paths {
        asm.skip(path.clone(), "skipped in the original snapshot".into());
    }
    let tree = asm.finish()?;
    let written = writer.finish()?;
    let (id, _) = tree.commit(dst, labels, None, snap.source_path.clone(), &written)?;
    Ok((id, tree.bytes))
}

fn copy_content(src: &Repository, asm: &mut TreeAssembler, index: u64, e: &Entry) -> Result<()> {
    asm.begin_file(index)?;
    let mut size = 0u64;
    for_each_chunk(src, &e.content, &mut |c| {
        let data = if c.id.is_hole() {
            vec![0u8; c.len as usize]
        } else {
            src.read_chunk(c.id)?
        };
        size += data.len() as u64;
        asm.file_data(&data)
    })?;
    asm.end_file(index, size)
}

fn copy_layer(
    src: &Repository,
    dst: &Repository,
    id: SnapshotId,
    snap: &Snapshot,
    labels: Labels,
) -> Result<(SnapshotId, u64)> {
    let (mut reader, mut writer) = std::io::pipe().map_err(|e| Error::io("pipe", e))?;
    let src = src.clone();
    let producer = std::thread::Builder::new()
        .name("amber-share".into())
        .spawn(move || {
            let result = restore_tar(&src, id, &mut writer);
            drop(writer);
            result
        })
        .map_err(|e| Error::Pipeline(e.to_string()))?;
    let opts = TarOptions {
        labels,
        progress: None,
        confine_paths: false,
    };
    let stored = snapshot_tar(dst, &mut reader, &snap.source_path, &opts);
    drop(reader);
    let produced = producer
        .join()
        .map_err(|_| Error::Pipeline("the layer reader panicked".into()))?;
    let size = produced?;
    Ok((stored?.id, size))
}

fn copy_volume(src: &Repository, dst: &Repository, snap: &Snapshot, labels: &Labels) -> Result<(SnapshotId, u64)> {
    let node = src.load_tree(TreeId::new(snap.root))?;
    let entry = node
        .entries()
        .first()
        .cloned()
        .ok_or_else(|| Error::InvalidArgument("the volume snapshot has no image entry".into()))?;
    let writer = BlobWriter::new(dst)?;
    let mut b = VolumeBuilder::new(&writer, entry.size, None)?;
    let mut copied = 0u64;
    let mut pending: Vec<u8> = Vec::new();
    for_each_chunk(src, &entry.content, &mut |c| {
        let i = b.next_block();
        if c.id.is_hole() && pending.is_empty() && u64::from(c.len) == b.block_len(i) {
            return b.hole(i).map(|_| ());
        }
        let data = if c.id.is_hole() {
            vec![0u8; c.len as usize]
        } else {
            src.read_chunk(c.id)?
        };
        pending.extend_from_slice(&data);
        while !pending.is_empty() && pending.len() as u64 >= b.block_len(b.next_block()) {
            let i = b.next_block();
            let len = usize::try_from(b.block_len(i)).unwrap_or(usize::MAX);
            let rest = pending.split_off(len.min(pending.len()));
            copied += pending.len() as u64;
            b.data(i, &pending)?;
            pending = rest;
        }
        Ok(())
    })?;
    let mut bare = entry.clone();
    bare.content = Content::None;
    let built = b.finish(labels, bare, snap.source_path.clone())?;
    writer.finish()?;
    Ok((built.id, copied))
}
