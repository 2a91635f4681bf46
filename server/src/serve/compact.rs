//! `Admin/Compact`: the engine's compaction over gRPC. The command line prints a local
//! run through the same wire type ([`report_to_wire`]).

use amber_engine::ops::compact::{self, CompactOptions, CompactReport};
use amber_engine::repo::Repository;
use amber_proto::v1 as pb;
use tonic::Status;

use crate::serve::status::from_engine;

/// The engine's options for a request (unset fields: the defaults).
///
/// # Errors
/// A `max_unused` outside 0…1.
pub fn options(req: &pb::CompactRequest) -> Result<CompactOptions, String> {
    let defaults = CompactOptions::default();
    let max_unused = req.max_unused.unwrap_or(defaults.max_unused);
    if !(0.0..=1.0).contains(&max_unused) {
        return Err(format!(
            "max unused share {max_unused} is not between 0 and 1 (0% and 100%)"
        ));
    }
    Ok(CompactOptions {
        dry_run: req.dry_run,
        max_unused,
        max_repack: req.max_repack_bytes,
        grace_secs: req
            .grace_seconds
            .map_or(defaults.grace_secs, |s| i64::try_from(s).unwrap_or(i64::MAX)),
        force_cold: req.force_cold,
    })
}

/// Runs a compaction on `repo`.
///
/// # Errors
/// INVALID_ARGUMENT for bad options; the engine's error as a status.
pub fn run(repo: &Repository, req: &pb::CompactRequest) -> Result<pb::CompactResponse, Status> {
    let opts = options(req).map_err(Status::invalid_argument)?;
    let report = compact::compact(repo, &opts).map_err(|e| from_engine(&e))?;
    Ok(report_to_wire(&report, req.dry_run))
}

/// The wire form of a report.
pub fn report_to_wire(r: &CompactReport, dry_run: bool) -> pb::CompactResponse {
    pb::CompactResponse {
        dry_run,
        snapshots: r.snapshots,
        nodes_read: r.nodes_read,
        packs: r.packs,
        stored_bytes: r.stored_bytes,
        live_bytes: r.live_bytes,
        deleted_packs: r.deleted_packs,
        deleted_bytes: r.deleted_bytes,
        repacked_packs: r.repacked_packs,
        repacked_bytes: r.repacked_bytes,
        condemned_packs: r.condemned_packs,
        condemned_bytes: r.condemned_bytes,
        pending_packs: r.pending_packs,
        pending_bytes: r.pending_bytes,
        revived_packs: r.revived_packs,
        young_packs: r.young_packs,
        busy_packs: r.busy_packs,
        cold_kept_packs: r.cold_kept_packs,
        cold_kept_bytes: r.cold_kept_bytes,
        cold_early_cost_usd: r.cold_early_cost,
        cold_sparse_packs: r.cold_sparse_packs,
        deleted_segments: r.deleted_segments,
        deleted_temp: r.deleted_temp,
        unreadable: r
            .unreadable
            .iter()
            .map(|(object, error)| pb::CompactUnreadable {
                object: object.clone(),
                error: error.clone(),
            })
            .collect(),
    }
}
