//! Sharing: a snapshot's data copied into another vault, re-chunked and re-encrypted under
//! that vault's keys (chunk ids are keyed per vault, so nothing can be copied as is).

use std::collections::HashMap;

use amber_engine::error::{Error, Result as EngineResult};
use amber_engine::format::snapshot::{Snapshot, SourceKind};
use amber_engine::format::tree::{Content, Entry, EntryKind};
use amber_engine::id::{SnapshotId, TreeId};
use amber_engine::ops::assemble::{Added, TreeAssembler};
use amber_engine::ops::content::for_each_chunk;
use amber_engine::ops::tar::{TarOptions, restore_tar, snapshot_tar};
use amber_engine::ops::volume_build::VolumeBuilder;
use amber_engine::ops::walk::walk;
use amber_engine::ops::{Labels, display_path};
use amber_engine::repo::Repository;
use amber_engine::repo::writer::BlobWriter;
use amber_proto::v1 as pb;
use tonic::Status;

use crate::serve::reader::resolve;
use crate::serve::status::from_engine;
use crate::serve::vaults::Vault;

/// Metadata key recording where a shared snapshot came from (`<vault>:<snapshot id>`).
pub const SHARED_FROM_KEY: &str = "amber.shared_from";

/// Copies snapshot `name` (resolved within `environment` when not empty) of `from` into `to`.
///
/// # Errors
/// NOT_FOUND for an unknown snapshot; engine errors.
pub fn share_snapshot(
    from: &Vault,
    to: &Vault,
    name: &str,
    environment: &str,
) -> Result<pb::ShareSnapshotResponse, Status> {
    let (id, snap) = resolve(&from.repo, name, environment)?;
    let mut labels = labels_of(&snap);
    labels
        .metadata
        .push((SHARED_FROM_KEY.into(), format!("{}:{}", from.name, id.to_hex())));
    let (new_id, bytes) = match snap.source {
        SourceKind::Tree => copy_tree(&from.repo, &to.repo, &snap, &labels),
        SourceKind::TarLayer => copy_layer(&from.repo, &to.repo, id, &snap, labels),
        SourceKind::BlockVolume => copy_volume(&from.repo, &to.repo, &snap, &labels),
        SourceKind::Image | SourceKind::Environment => {
            return Err(Status::failed_precondition(format!(
                "snapshot {id} is a {} snapshot; sharing those is not supported yet",
                snap.source.name()
            )));
        }
    }
    .map_err(|e| from_engine(&e))?;
    Ok(pb::ShareSnapshotResponse {
        snapshot_id: new_id.to_hex(),
        bytes,
    })
}

fn labels_of(s: &Snapshot) -> Labels {
    let mut labels = crate::serve::convert::labels(Some(&crate::serve::convert::wire_labels(s)), &s.hostname);
    labels
        .metadata
        .retain(|(k, _)| !k.starts_with("oci.") && k != SHARED_FROM_KEY);
    labels
}

fn copy_tree(src: &Repository, dst: &Repository, snap: &Snapshot, labels: &Labels) -> EngineResult<(SnapshotId, u64)> {
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

fn copy_content(src: &Repository, asm: &mut TreeAssembler, index: u64, e: &Entry) -> EngineResult<()> {
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
) -> EngineResult<(SnapshotId, u64)> {
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

fn copy_volume(
    src: &Repository,
    dst: &Repository,
    snap: &Snapshot,
    labels: &Labels,
) -> EngineResult<(SnapshotId, u64)> {
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
