//! `Admin/Compact`: the engine's compaction over gRPC. The command line prints a local
//! run through the same wire type ([`report_to_wire`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use amber_engine::ops::compact::{self, CompactOptions, CompactReport, CompactStep};
use amber_engine::repo::Repository;
use amber_proto::v1 as pb;
use tonic::Status;

use crate::serve::audit;
use crate::serve::reader::Out;
use crate::serve::state::State;
use crate::serve::status::from_engine;
use crate::serve::vaults::Vault;

/// Every `every` (the first time one period after the start): compacts every vault with
/// the default thresholds and a grace period of `grace_secs`, and records the outcome in
/// the vault's audit log (call `scheduled compact`, result `ok` or `unavailable`, what was
/// freed in the detail), where `Admin/ListAudit` shows it.
pub async fn scheduled(state: Arc<State>, every: Duration, grace_secs: u64) {
    let opts = CompactOptions {
        grace_secs: i64::try_from(grace_secs).unwrap_or(i64::MAX),
        ..CompactOptions::default()
    };
    crate::serve::periodically(every, move || {
        for vault in state.vaults.all() {
            compact_and_record(vault, &opts);
        }
    })
    .await;
}

fn compact_and_record(vault: &Vault, opts: &CompactOptions) {
    let (result, detail) = match compact::compact(&vault.repo, opts) {
        Ok(r) => ("ok", summary_line(&r)),
        Err(e) => ("unavailable", e.to_string()),
    };
    audit::record_scheduled(vault, "scheduled compaction", "scheduled compact", result, detail);
}

fn summary_line(r: &CompactReport) -> String {
    format!(
        "{} snapshots, {} packs; deleted {} packs ({} bytes), repacked {} ({} bytes), condemned {}, {} waiting for the grace period",
        r.snapshots,
        r.packs,
        r.deleted_packs,
        r.deleted_bytes,
        r.repacked_packs,
        r.repacked_bytes,
        r.condemned_packs,
        r.pending_packs
    )
}

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

/// Runs a compaction on `repo`, streaming its progress (each phase's start and end, and
/// in between at most every [`STEP_EVERY`]) and then its report to `out`.
///
/// # Errors
/// INVALID_ARGUMENT for bad options; the engine's error as a status.
pub fn send_run(repo: &Repository, req: &pb::CompactRequest, out: &Out<pb::CompactEvent>) -> Result<(), Status> {
    let opts = options(req).map_err(Status::invalid_argument)?;
    let throttle = Throttle::default();
    let progress = |s: CompactStep| {
        if throttle.due(s) {
            out.send(pb::CompactEvent {
                step: Some(step_to_wire(s)),
                done: None,
            });
        }
    };
    let report = compact::compact_with_progress(repo, &opts, &progress).map_err(|e| from_engine(&e))?;
    out.send(pb::CompactEvent {
        step: None,
        done: Some(report_to_wire(&report, req.dry_run)),
    });
    Ok(())
}

/// The least time between two progress messages of one phase.
pub const STEP_EVERY: Duration = Duration::from_millis(250);

/// Which progress steps to send: each phase's first and last, and in between at most
/// one every [`STEP_EVERY`].
#[derive(Default)]
pub struct Throttle {
    last: std::sync::Mutex<Option<(&'static str, Instant)>>,
}

impl Throttle {
    /// Whether step `s` is to be sent (noting it when so).
    pub fn due(&self, s: CompactStep) -> bool {
        let Ok(mut last) = self.last.lock() else { return false };
        let due = match *last {
            Some((phase, at)) => phase != s.phase || s.done == s.total || at.elapsed() >= STEP_EVERY,
            None => true,
        };
        if due {
            *last = Some((s.phase, Instant::now()));
        }
        due
    }
}

/// The wire form of a step.
pub fn step_to_wire(s: CompactStep) -> pb::CompactStep {
    pb::CompactStep {
        phase: s.phase.to_string(),
        done: s.done,
        total: s.total,
    }
}

/// The wire form of a report.
pub fn report_to_wire(r: &CompactReport, dry_run: bool) -> pb::CompactResponse {
    pb::CompactResponse {
        dry_run,
        snapshots: r.snapshots,
        nodes_read: r.nodes_read,
        snapshots_walked: r.snapshots_walked,
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
