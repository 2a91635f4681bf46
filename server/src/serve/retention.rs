//! `Admin/Forget` and `Admin/Protect`: the engine's retention over gRPC. The command line
//! prints a local run through the same wire types ([`report_to_wire`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use amber_engine::ops::forget::{self, ForgetReport, Policy};
use amber_engine::ops::progress::Step;
use amber_engine::repo::Repository;
use amber_proto::v1 as pb;
use tonic::Status;

use crate::serve::audit;
use crate::serve::compact::{Throttle, step_to_wire};
use crate::serve::config::Retention;
use crate::serve::reader::{Out, resolve};
use crate::serve::state::State;
use crate::serve::status::from_engine;

/// Every `every` (the first time one period after the start): applies each configured
/// vault's retention policy, and records the outcome in its audit log (role `server`, call
/// `scheduled forget`, the counts as detail).
pub async fn scheduled(state: Arc<State>, every: Duration, policies: BTreeMap<String, Retention>) {
    crate::serve::periodically(every, move || {
        for (name, r) in &policies {
            if let Some(vault) = state.vaults.get(name) {
                forget_and_record(&vault, &configured(r));
            }
        }
    })
    .await;
}

/// The policy of a `[vault.retention]` table.
pub fn configured(r: &Retention) -> Policy {
    policy(&pb::ForgetRequest {
        keep_last: r.keep_last,
        keep_hourly: r.keep_hourly,
        keep_daily: r.keep_daily,
        keep_weekly: r.keep_weekly,
        keep_monthly: r.keep_monthly,
        keep_yearly: r.keep_yearly,
        keep_within_seconds: r.keep_within_seconds,
        keep_tags: r.keep_tags.clone(),
        ..pb::ForgetRequest::default()
    })
}

fn forget_and_record(vault: &crate::serve::vaults::Vault, policy: &Policy) {
    // A policy that keeps nothing is never applied on a schedule.
    let outcome = if policy.is_empty() {
        Err("the policy keeps nothing: not applied".to_string())
    } else {
        forget::forget(&vault.repo, policy, false).map_err(|e| e.to_string())
    };
    let (result, detail) = match &outcome {
        Ok(r) => ("ok", format!("{} kept, {} removed", r.kept.len(), r.removed.len())),
        Err(e) => ("failed_precondition", e.clone()),
    };
    audit::record_scheduled(vault, "scheduled retention", "scheduled forget", result, detail);
}

/// The policy a request names.
pub fn policy(r: &pb::ForgetRequest) -> Policy {
    Policy {
        last: r.keep_last,
        hourly: r.keep_hourly,
        daily: r.keep_daily,
        weekly: r.keep_weekly,
        monthly: r.keep_monthly,
        yearly: r.keep_yearly,
        within_secs: (r.keep_within_seconds > 0).then_some(r.keep_within_seconds),
        tags: r.keep_tags.clone(),
    }
}

/// Applies a request's policy, streaming its progress and then its report to `out`.
///
/// # Errors
/// INVALID_ARGUMENT for a policy that keeps nothing; what the store reports.
pub fn send_forget(repo: &Repository, r: &pb::ForgetRequest, out: &Out<pb::ForgetEvent>) -> Result<(), Status> {
    let policy = policy(r);
    if policy.is_empty() {
        return Err(Status::invalid_argument(
            "give at least one --keep-* option: this policy would remove every snapshot that is not protected",
        ));
    }
    let throttle = Throttle::default();
    let progress = |s: Step| {
        if throttle.due(s) {
            out.send(pb::ForgetEvent {
                step: Some(step_to_wire(s)),
                done: None,
            });
        }
    };
    let report = forget::forget_with_progress(repo, &policy, r.dry_run, &progress).map_err(|e| from_engine(&e))?;
    out.send(pb::ForgetEvent {
        step: None,
        done: Some(report_to_wire(&report, r.dry_run)),
    });
    Ok(())
}

/// Protects a snapshot or lifts that.
///
/// # Errors
/// NOT_FOUND for an unknown snapshot; what the store reports.
pub fn protect(repo: &Repository, r: &pb::ProtectRequest) -> Result<pb::ProtectResponse, Status> {
    let (id, _) = resolve(repo, &r.snapshot, &r.environment)?;
    forget::set_protected(repo, id, r.protect).map_err(|e| from_engine(&e))?;
    Ok(pb::ProtectResponse {
        snapshot: id.to_string(),
        protected: r.protect,
    })
}

/// A forget report in the wire's terms.
pub fn report_to_wire(r: &ForgetReport, dry_run: bool) -> pb::ForgetResponse {
    pb::ForgetResponse {
        dry_run,
        kept: r
            .kept
            .iter()
            .map(|k| pb::ForgetKept {
                id: k.id.to_string(),
                group: k.group.clone(),
                reasons: k.reasons.clone(),
            })
            .collect(),
        removed: r
            .removed
            .iter()
            .map(|(id, group)| pb::ForgetRemoved {
                id: id.to_string(),
                group: group.clone(),
            })
            .collect(),
    }
}
