//! A vault's audit log, as the server writes and serves it. The log lives in the vault's
//! store (sealed, hash-chained, create-only objects: engine `repo::audit`,
//! `format-spec/audit.md`), so every server of a cluster appends to the same log and a
//! deleted state directory loses nothing.

use amber_engine::format::audit::AuditEvent;
use amber_engine::repo::audit::{AuditLog, read_audit};
use amber_proto::v1 as pb;
use tokio::runtime::{Handle, RuntimeFlavor};
use tonic::Status;

use crate::serve::log::{self, Level};
use crate::serve::reader::Out;
use crate::serve::status::from_engine;
use crate::serve::vaults::Vault;

/// Records per message of a `ListAudit` answer.
const BATCH: usize = 256;

/// Appends `event` to the vault's audit log before the call's answer goes out; a failure
/// is reported in the structured log (the call's own result stands). The write is one
/// store request, so on the async executor it runs where blocking is allowed.
pub fn record(vault: &Vault, event: &AuditEvent) {
    let write = || vault.audit.append(&vault.repo.keys().audit_key, event);
    let written = match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(write),
        _ => write(),
    };
    if let Err(e) = written {
        log::event(
            Level::Error,
            &event.request_id,
            "audit log write failed",
            &[("vault", &vault.name), ("error", &e)],
        );
    }
}

/// Logs the outcome of a run the server made on its own schedule (`what`, as
/// `scheduled verification`) and records it in the vault's audit log as call `call`, role
/// `server`; a `result` other than `ok` is logged as a warning.
pub fn record_scheduled(vault: &Vault, what: &str, call: &str, result: &str, detail: String) {
    log::event(
        if result == "ok" { Level::Info } else { Level::Warn },
        "-",
        what,
        &[
            ("vault", &vault.name as &dyn std::fmt::Display),
            ("result", &result),
            ("detail", &detail),
        ],
    );
    let event = AuditEvent {
        role: "server".into(),
        call: call.into(),
        target: vault.name.clone(),
        result: result.into(),
        detail,
        ..AuditEvent::default()
    };
    record(vault, &event);
}

/// Streams the vault's audit log from `since_unix_ms` (0: all) in batches, problems last.
///
/// # Errors
/// The store failed while listing or reading the log.
pub fn send_log(vault: &Vault, since_unix_ms: i64, out: &Out<pb::ListAuditResponse>) -> Result<(), Status> {
    let since = (since_unix_ms > 0).then_some(since_unix_ms);
    let log =
        read_audit(vault.repo.backend().as_ref(), &vault.repo.keys().audit_key, since).map_err(|e| from_engine(&e))?;
    let AuditLog { entries, problems } = log;
    let mut records = entries.into_iter().map(|e| {
        let r = e.record;
        pb::AuditRecord {
            time_unix_ms: r.time_unix_ms,
            writer: format!("{:016x}", e.writer),
            seq: r.seq,
            request_id: r.event.request_id,
            token_id: r.event.token_id,
            role: r.event.role,
            call: r.event.call,
            target: r.event.target,
            result: r.event.result,
            detail: r.event.detail,
        }
    });
    loop {
        let batch: Vec<_> = records.by_ref().take(BATCH).collect();
        let last = batch.len() < BATCH;
        let problems = if last {
            problems
                .iter()
                .map(|p| pb::AuditProblem {
                    key: p.key.clone(),
                    detail: p.detail.clone(),
                })
                .collect()
        } else {
            Vec::new()
        };
        if !out.send(pb::ListAuditResponse {
            records: batch,
            problems,
        }) || last
        {
            return Ok(());
        }
    }
}
