//! `Admin/Verify`: the engine's verification of a vault, streamed as one message per
//! problem and a last one with the summary. The command line prints a local report
//! through the same wire types ([`to_wire`]), so both modes print alike.

use std::sync::Arc;
use std::time::Duration;

use amber_engine::ops::verify::{self, DataCheck, Subset, VerifyOptions, VerifyReport};
use amber_proto::v1 as pb;
use tonic::Status;

use amber_engine::ops::progress::Step;

use crate::serve::audit;
use crate::serve::compact::{Throttle, step_to_wire};
use crate::serve::reader::Out;
use crate::serve::state::State;
use crate::serve::status::from_engine;
use crate::serve::vaults::Vault;

/// Every `every` (the first time one period after the start): verifies every vault,
/// reading `subset` of its packs, and records the outcome in the vault's audit log (call
/// `scheduled verify`, result `ok` or `data_loss`, the counts and the first problem in
/// the detail), where `Admin/ListAudit` shows it.
pub async fn scheduled(state: Arc<State>, every: Duration, subset: String) {
    crate::serve::periodically(every, move || {
        for vault in state.vaults.all() {
            verify_and_record(vault, &subset);
        }
    })
    .await;
}

/// One scheduled verification of `vault`, recorded in its audit log.
fn verify_and_record(vault: &Vault, subset: &str) {
    let outcome = options(false, subset, false).and_then(|opts| verify::verify(&vault.repo, &opts));
    let (result, detail) = match &outcome {
        Ok(r) if r.clean() => ("ok", summary_line(r)),
        Ok(r) => {
            let first = r
                .problems
                .first()
                .map(|p| format!("; first: {}: {}", p.kind.name(), p.detail));
            ("data_loss", format!("{}{}", summary_line(r), first.unwrap_or_default()))
        }
        Err(e) => ("unavailable", e.to_string()),
    };
    audit::record_scheduled(vault, "scheduled verification", "scheduled verify", result, detail);
}

fn summary_line(r: &VerifyReport) -> String {
    format!(
        "{} snapshots, {} packs, {} read; {} problems, {} snapshots affected",
        r.snapshots,
        r.packs,
        r.packs_read,
        r.problems.len(),
        r.damaged_snapshots.len()
    )
}

/// The options a request asks for.
///
/// # Errors
/// INVALID_ARGUMENT when `read_data_subset` does not parse.
pub fn options(read_data: bool, subset: &str, warm_up: bool) -> Result<VerifyOptions, amber_engine::error::Error> {
    let read_data = match (subset.is_empty(), read_data) {
        (false, _) => DataCheck::Subset(Subset::parse(subset)?),
        (true, true) => DataCheck::All,
        (true, false) => DataCheck::None,
    };
    Ok(VerifyOptions { read_data, warm_up })
}

/// Verifies `vault` and streams what was found.
///
/// # Errors
/// INVALID_ARGUMENT for a bad subset; what the engine reports when the check cannot run.
pub fn send_report(vault: &Vault, req: &pb::VerifyRequest, out: &Out<pb::VerifyResponse>) -> Result<(), Status> {
    let opts = options(req.read_data, &req.read_data_subset, req.warm_up).map_err(|e| from_engine(&e))?;
    let throttle = Throttle::default();
    let progress = |s: Step| {
        if throttle.due(s) {
            out.send(pb::VerifyResponse {
                step: Some(step_to_wire(s)),
                ..pb::VerifyResponse::default()
            });
        }
    };
    let report = verify::verify_with_progress(&vault.repo, &opts, &progress).map_err(|e| from_engine(&e))?;
    let (summary, problems) = to_wire(&report);
    for problem in problems {
        let msg = pb::VerifyResponse {
            problem: Some(problem),
            ..pb::VerifyResponse::default()
        };
        if !out.send(msg) {
            return Ok(());
        }
    }
    out.send(pb::VerifyResponse {
        summary: Some(summary),
        ..pb::VerifyResponse::default()
    });
    Ok(())
}

/// The engine's report in the wire's terms.
pub fn to_wire(r: &VerifyReport) -> (pb::VerifySummary, Vec<pb::VerifyProblem>) {
    let summary = pb::VerifySummary {
        snapshots: r.snapshots,
        chunks: r.chunks,
        packs: r.packs,
        packs_read: r.packs_read,
        bytes_read: r.bytes_read,
        cold_not_read: r.cold_not_read,
        warm_up_requested: r.warm_up_requested,
        unreferenced_packs: r.unreferenced_packs,
        damaged_snapshots: r.damaged_snapshots.iter().map(ToString::to_string).collect(),
        marked: r
            .marked
            .iter()
            .map(|m| pb::VerifyMarked {
                snapshot: m.snapshot.to_string(),
                path: m.path.clone(),
                lost_bytes: m.lost_bytes,
            })
            .collect(),
        marked_total: r.marked_total,
        healed: r.healed,
    };
    let problems = r
        .problems
        .iter()
        .map(|p| pb::VerifyProblem {
            kind: p.kind.name().to_string(),
            pack: p.pack.map(|id| id.to_string()).unwrap_or_default(),
            object: p.object.clone().unwrap_or_default(),
            detail: p.detail.clone(),
            affected: p
                .affected
                .iter()
                .map(|a| pb::VerifyPlace {
                    snapshot: a.snapshot.to_string(),
                    path: a.path.clone(),
                    has_range: a.range.is_some(),
                    offset: a.range.map_or(0, |r| r.0),
                    length: a.range.map_or(0, |r| r.1),
                })
                .collect(),
            affected_total: p.affected_total,
        })
        .collect();
    (summary, problems)
}
