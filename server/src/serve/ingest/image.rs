//! Committing a container image whose layers were pushed one by one (`ImageHeader`).

use std::collections::BTreeMap;

use amber_engine::id::SnapshotId;
use amber_engine::ops::image::{ImageFormat, ImageParts, commit_image_parts};
use amber_proto::v1 as pb;
use amber_proto::v1::push_response::Frame as Answer;
use tonic::Status;

use super::inbox::Outbox;
use super::session::Push;
use crate::serve::convert;
use crate::serve::status::from_engine;

/// Checks the header's parts, commits the image snapshot and answers Accepted.
///
/// # Errors
/// INVALID_ARGUMENT for bad parts, NOT_FOUND for a layer snapshot the vault lacks.
pub fn run(push: &Push, header: &pb::ImageHeader, outbox: &Outbox) -> Result<pb::Committed, Status> {
    let format = ImageFormat::parse(&header.format).map_err(|e| from_engine(&e))?;
    let mut parts = ImageParts {
        format,
        files: BTreeMap::new(),
        symlinks: BTreeMap::new(),
        layers: BTreeMap::new(),
        source_name: push.header.source_path.clone(),
    };
    if let Some((path, _)) = parts_paths(header).into_iter().find(|(_, n)| *n > 1) {
        return Err(Status::invalid_argument(format!(
            "image path {:?} appears more than once",
            String::from_utf8_lossy(path)
        )));
    }
    for f in &header.files {
        parts.files.insert(f.path.clone(), f.data.clone());
    }
    for l in &header.links {
        parts.symlinks.insert(l.path.clone(), l.target.clone());
    }
    for l in &header.layers {
        let id = SnapshotId::from_hex(&l.snapshot_id)
            .map_err(|_| Status::invalid_argument(format!("layer snapshot id {:?} is not a full id", l.snapshot_id)))?;
        parts.layers.insert(l.path.clone(), (id, l.size));
    }
    let summary = commit_image_parts(&push.vault().repo, &parts, &push.labels).map_err(|e| from_engine(&e))?;
    outbox.send(Answer::Accepted(pb::Accepted {
        request_id: push.caller.request_id.clone(),
        ..Default::default()
    }))?;
    Ok(pb::Committed {
        snapshot_id: summary.id.to_hex(),
        already_stored: false,
        stats: convert::snapshot_info(summary.id, &summary.snapshot).stats,
        bytes_received: header.files.iter().map(|f| f.data.len() as u64).sum(),
        reused: summary.layers.len() as u64,
        sent: header.files.len() as u64,
        empty_files: 0,
    })
}

/// Every path of the header, with how often it appears.
fn parts_paths(header: &pb::ImageHeader) -> BTreeMap<&[u8], usize> {
    let mut count = BTreeMap::new();
    let paths = header
        .files
        .iter()
        .map(|f| f.path.as_slice())
        .chain(header.links.iter().map(|l| l.path.as_slice()))
        .chain(header.layers.iter().map(|l| l.path.as_slice()));
    for p in paths {
        *count.entry(p).or_insert(0) += 1;
    }
    count
}
