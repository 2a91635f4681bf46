//! Committing an environment snapshot whose parts were pushed (`EnvironmentHeader`).

use amber_engine::id::SnapshotId;
use amber_engine::ops::environment::{Part, PartKind, commit_environment};
use amber_proto::v1 as pb;
use amber_proto::v1::push_response::Frame as Answer;
use tonic::Status;

use super::inbox::Outbox;
use super::session::Push;
use crate::serve::convert;
use crate::serve::status::from_engine;

/// Checks the parts, commits the environment snapshot and answers Accepted.
///
/// # Errors
/// INVALID_ARGUMENT for bad parts, NOT_FOUND for a part the vault lacks.
pub fn run(push: &Push, header: &pb::EnvironmentHeader, outbox: &Outbox) -> Result<pb::Committed, Status> {
    let mut parts = Vec::new();
    for p in &header.parts {
        let kind = PartKind::parse(&p.kind).map_err(|e| from_engine(&e))?;
        let snapshot = SnapshotId::from_hex(&p.snapshot_id)
            .map_err(|_| Status::invalid_argument(format!("part snapshot id {:?} is not a full id", p.snapshot_id)))?;
        parts.push(Part {
            kind,
            snapshot,
            mount: p.mount.clone(),
        });
    }
    let (id, snap) = commit_environment(&push.vault().repo, &parts, &push.labels).map_err(|e| from_engine(&e))?;
    outbox.send(Answer::Accepted(pb::Accepted {
        request_id: push.caller.request_id.clone(),
        ..Default::default()
    }))?;
    Ok(pb::Committed {
        snapshot_id: id.to_hex(),
        stats: convert::snapshot_info(id, &snap).stats,
        reused: parts.len() as u64,
        ..Default::default()
    })
}
