//! `Restore/ColdRestore`: the cold plan of a snapshot and its restore job. The job is a
//! record in the vault's store (`jobs/cold-restore/<snapshot id>`, JSON, create-only:
//! when it was asked for and how); its state is the store's own restore status of each
//! pack, read on every call, so any server of a cluster answers for it after any restart.
//! The command line prints a local plan through the same wire type ([`to_wire`]).

use amber_engine::backend::{BackendError, PutMode, RestoreStatus, RetrievalTier};
use amber_engine::id::SnapshotId;
use amber_engine::ops::cold::{self, ColdPlan};
use amber_engine::ops::tier::PriceTable;
use amber_engine::repo::Repository;
use amber_proto::v1 as pb;
use tonic::Status;

use crate::serve::reader::resolve;
use crate::serve::status::from_engine;

/// Days restored copies stay readable when the request does not say.
const DEFAULT_DAYS: u32 = 7;

/// The store key of the job record of snapshot `id`.
pub fn job_key(id: SnapshotId) -> String {
    format!("jobs/cold-restore/{id}")
}

/// `bulk` (also empty) or `standard`.
///
/// # Errors
/// INVALID_ARGUMENT for anything else.
pub fn retrieval(text: &str) -> Result<RetrievalTier, Status> {
    match text {
        "" | "bulk" | "Bulk" => Ok(RetrievalTier::Bulk),
        "standard" | "Standard" => Ok(RetrievalTier::Standard),
        other => Err(Status::invalid_argument(format!(
            "retrieval {other:?}: use bulk or standard"
        ))),
    }
}

/// Plans (and with `warm_up`, starts) the cold restore of a snapshot.
///
/// # Errors
/// NOT_FOUND for an unknown snapshot; what the store reports.
pub fn cold_restore(
    repo: &Repository,
    req: &pb::ColdRestoreRequest,
    token_id: &str,
) -> Result<pb::ColdRestoreJob, Status> {
    let tier = retrieval(&req.retrieval)?;
    let (id, _) = resolve(repo, &req.snapshot, &req.environment)?;
    let engine = |e: amber_engine::error::Error| from_engine(&e);
    let mut plan = cold::plan(repo, id).map_err(engine)?;
    let mut asked = 0;
    if req.warm_up && !plan.ready() {
        let days = if req.days == 0 { DEFAULT_DAYS } else { req.days };
        record_job(repo, id, tier, days, token_id)?;
        asked = cold::warm_up(repo, &plan, days, tier).map_err(engine)?;
        cold::refresh(repo, &mut plan).map_err(engine)?;
    }
    let created = job_created(repo, id)?;
    Ok(to_wire(id, &plan, tier, asked, created))
}

/// Records the job unless one is recorded already (the first warm-up's record stays).
fn record_job(repo: &Repository, id: SnapshotId, tier: RetrievalTier, days: u32, token_id: &str) -> Result<(), Status> {
    let record = serde_json::json!({
        "snapshot": id.to_string(),
        "created_unix_ms": now_ms(),
        "retrieval": tier.as_str(),
        "days": days,
        "token_id": token_id,
    });
    repo.backend()
        .put(&job_key(id), record.to_string().as_bytes(), PutMode::CreateOnly)
        .map_err(|e| from_engine(&e.into()))?;
    Ok(())
}

/// When the job of snapshot `id` was recorded; 0 when there is none (or it is unreadable).
fn job_created(repo: &Repository, id: SnapshotId) -> Result<i64, Status> {
    let bytes = match repo.backend().get(&job_key(id)) {
        Ok(b) => b,
        Err(BackendError::NotFound { .. }) => return Ok(0),
        Err(e) => return Err(from_engine(&e.into())),
    };
    let record: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    Ok(record
        .get("created_unix_ms")
        .and_then(serde_json::Value::as_i64)
        .unwrap_or(0))
}

fn now_ms() -> i64 {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// A plan in the wire's terms.
pub fn to_wire(
    id: SnapshotId,
    plan: &ColdPlan,
    tier: RetrievalTier,
    asked: u64,
    created_ms: i64,
) -> pb::ColdRestoreJob {
    let prices = PriceTable::default();
    pb::ColdRestoreJob {
        snapshot: id.to_string(),
        packs_needed: plan.packs_needed,
        archived: plan
            .archived
            .iter()
            .map(|p| pb::ColdPack {
                pack: p.key.clone(),
                bytes: p.size,
                class: p.class.as_str().to_string(),
                status: status_name(p.status).to_string(),
            })
            .collect(),
        bytes_waiting: plan.bytes_waiting(),
        retrieval: tier.as_str().to_string(),
        estimated_cost: plan.cost(&prices, tier),
        expected_wait: plan.expected_wait(tier).to_string(),
        requested: asked,
        ready: plan.ready(),
        job_created_unix_ms: created_ms,
    }
}

/// A pack's restore status as reports name it.
pub fn status_name(s: RestoreStatus) -> &'static str {
    match s {
        RestoreStatus::Readable => "readable",
        RestoreStatus::Archived => "archived",
        RestoreStatus::InProgress => "restoring",
    }
}
