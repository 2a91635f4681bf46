//! `amber stats`: restore size, distinct content and stored bytes of the vault, in all,
//! per kind of snapshot and per environment, with the deduplication ratio; on the
//! repository or through `--server`, the same document.

use std::process::ExitCode;

use amber_proto::v1 as pb;
use amber_server::serve::catalog::stats_to_wire;
use anyhow::Result;
use serde_json::{Value, json};

use crate::cli::Global;
use crate::client::{Remote, block_on, failed};
use crate::context;
use crate::output::{bytes, emit};

/// Runs `amber stats`.
///
/// # Errors
/// Store, index, connection and server errors.
pub fn run(g: &Global) -> Result<ExitCode> {
    let stats = if g.server.is_some() {
        block_on(async {
            let remote = Remote::connect(g).await?;
            let req = pb::GetStatsRequest {
                vault: remote.vault.clone(),
            };
            Ok(remote
                .catalog()
                .get_stats(remote.request(req))
                .await
                .map_err(|s| failed("cannot count the vault", &s))?
                .into_inner())
        })?
    } else {
        let repo = context::open_read(g)?;
        stats_to_wire(&amber_engine::ops::stats::stats(&repo)?)
    };
    emit(g.json, &stats_json(&stats), || stats_text(&stats));
    Ok(ExitCode::SUCCESS)
}

fn ratio(g: &pb::StatsGroup) -> f64 {
    if g.unique_bytes == 0 {
        0.0
    } else {
        g.restore_bytes as f64 / g.unique_bytes as f64
    }
}

fn group_json(g: &pb::StatsGroup) -> Value {
    json!({
        "snapshots": g.snapshots,
        "restore_bytes": g.restore_bytes,
        "chunks": g.chunks,
        "unique_bytes": g.unique_bytes,
        "dedup_ratio": ratio(g),
    })
}

fn named(groups: &[pb::StatsGroup]) -> Value {
    Value::Object(groups.iter().map(|g| (g.name.clone(), group_json(g))).collect())
}

fn stats_json(s: &pb::VaultStats) -> Value {
    let total = s.total.clone().unwrap_or_default();
    let compression = if s.stored_bytes == 0 {
        0.0
    } else {
        total.unique_bytes as f64 / s.stored_bytes as f64
    };
    json!({
        "total": group_json(&total),
        "by_kind": named(&s.by_kind),
        "by_environment": named(&s.by_environment),
        "packs": s.packs,
        "stored_bytes": s.stored_bytes,
        "compression_ratio": compression,
        "unreadable_snapshots": s.unreadable_snapshots,
    })
}

fn line(name: &str, g: &pb::StatsGroup) -> String {
    format!(
        "{name:<24} {:>6} snapshots  restore {:>10}  distinct {:>10}  dedup {:.2}x",
        g.snapshots,
        bytes(g.restore_bytes),
        bytes(g.unique_bytes),
        ratio(g)
    )
}

fn stats_text(s: &pb::VaultStats) -> String {
    let total = s.total.clone().unwrap_or_default();
    let mut out = vec![line("all", &total)];
    out.extend(s.by_kind.iter().map(|g| line(&format!("kind {}", g.name), g)));
    out.extend(s.by_environment.iter().map(|g| line(&format!("env {}", g.name), g)));
    out.push(format!("stored: {} in {} packs", bytes(s.stored_bytes), s.packs));
    out.join("\n")
}
