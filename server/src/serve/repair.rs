//! `Admin/RepairSnapshots` and `Admin/RepairIndex`: the engine's repairs over gRPC. The
//! command line prints a local run through the same wire types ([`to_wire`],
//! [`index_to_wire`]).

use amber_engine::ops::progress::Step;
use amber_engine::ops::repair::snapshots::{RepairSnapshotsOptions, RepairSnapshotsReport, repair_snapshots};
use amber_engine::ops::repair::{RepairIndexReport, repair_index_with_progress};
use amber_engine::repo::Repository;
use amber_proto::v1 as pb;
use tonic::Status;

use crate::serve::compact::{Throttle, step_to_wire};
use crate::serve::reader::{Out, resolve};
use crate::serve::status::from_engine;

/// Runs a repair on `repo` and streams what it did to `out`.
///
/// # Errors
/// NOT_FOUND for a snapshot that is not there; the engine's error as a status.
pub fn send_run(
    repo: &Repository,
    req: &pb::RepairSnapshotsRequest,
    out: &Out<pb::RepairSnapshotsEvent>,
) -> Result<(), Status> {
    let snapshots = req
        .snapshots
        .iter()
        .map(|name| resolve(repo, name, "").map(|(id, _)| id))
        .collect::<Result<Vec<_>, Status>>()?;
    let opts = RepairSnapshotsOptions {
        snapshots,
        dry_run: req.dry_run,
    };
    let report = repair_snapshots(repo, &opts).map_err(|e| from_engine(&e))?;
    for event in to_wire(&report) {
        if !out.send(event) {
            return Err(Status::cancelled("the client went away"));
        }
    }
    Ok(())
}

/// The report as the stream sends it: the repaired, the unrepairable, then `done`.
pub fn to_wire(r: &RepairSnapshotsReport) -> Vec<pb::RepairSnapshotsEvent> {
    let repaired = r.repaired.iter().map(|s| pb::RepairSnapshotsEvent {
        repaired: Some(pb::RepairedSnapshot {
            original: s.original.to_hex(),
            repaired: s.repaired.map(|id| id.to_hex()).unwrap_or_default(),
            kind: s.kind.to_string(),
            files: s.files,
            dirs: s.dirs,
            lost_bytes: s.lost_bytes,
            parts: s.parts,
            paths: s
                .paths
                .iter()
                .map(|(path, lost_bytes)| pb::DamagedPath {
                    path: path.clone(),
                    lost_bytes: *lost_bytes,
                })
                .collect(),
        }),
        ..pb::RepairSnapshotsEvent::default()
    });
    let unrepairable = r.unrepairable.iter().map(|(id, why)| pb::RepairSnapshotsEvent {
        unrepairable: Some(pb::RepairUnrepairable {
            snapshot: id.to_hex(),
            error: why.clone(),
        }),
        ..pb::RepairSnapshotsEvent::default()
    });
    let done = pb::RepairSnapshotsEvent {
        done: Some(pb::RepairSnapshotsDone {
            dry_run: r.dry_run,
            checked: r.checked,
            unchanged: r.unchanged.iter().map(|id| id.to_hex()).collect(),
        }),
        ..pb::RepairSnapshotsEvent::default()
    };
    repaired.chain(unrepairable).chain(std::iter::once(done)).collect()
}

/// Rebuilds the index of `repo` and streams progress, then what it did, to `out`.
///
/// # Errors
/// The engine's error as a status.
pub fn send_index_run(
    repo: &Repository,
    req: &pb::RepairIndexRequest,
    out: &Out<pb::RepairIndexEvent>,
) -> Result<(), Status> {
    let throttle = Throttle::default();
    let progress = |s: Step| {
        if throttle.due(s) {
            out.send(pb::RepairIndexEvent {
                step: Some(step_to_wire(s)),
                ..pb::RepairIndexEvent::default()
            });
        }
    };
    let report = repair_index_with_progress(repo, req.dry_run, &progress).map_err(|e| from_engine(&e))?;
    for event in index_to_wire(&report) {
        if !out.send(event) {
            return Err(Status::cancelled("the client went away"));
        }
    }
    Ok(())
}

/// The report as the stream sends it after its steps: the lost blobs, the objects nothing
/// can describe, then `done`.
pub fn index_to_wire(r: &RepairIndexReport) -> Vec<pb::RepairIndexEvent> {
    let lost = r.lost_blobs.iter().map(|(blob, pack, why)| pb::RepairIndexEvent {
        lost: Some(pb::RepairIndexLost {
            blob: blob.to_hex(),
            pack: pack.to_hex(),
            error: why.clone(),
        }),
        ..pb::RepairIndexEvent::default()
    });
    let unrecoverable = r.unrecoverable.iter().map(|(object, why)| pb::RepairIndexEvent {
        unrecoverable: Some(pb::CompactUnreadable {
            object: object.clone(),
            error: why.clone(),
        }),
        ..pb::RepairIndexEvent::default()
    });
    let done = pb::RepairIndexEvent {
        done: Some(pb::RepairIndexDone {
            dry_run: r.dry_run,
            packs: r.packs,
            blobs: r.blobs,
            described_packs: r.described_packs,
            deleted_segments: r.deleted_segments,
            rescued_packs: r.rescued_packs,
            rescued_blobs: r.rescued_blobs,
        }),
        ..pb::RepairIndexEvent::default()
    };
    lost.chain(unrecoverable).chain(std::iter::once(done)).collect()
}
