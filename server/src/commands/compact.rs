//! `amber compact`: on the repository (with its passphrase) or through `--server` (an
//! admin token), printing the same document.

use std::process::ExitCode;

use amber_proto::v1 as pb;
use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};

use crate::cli::{CompactArgs, Global};
use crate::client::{Remote, block_on, failed};
use crate::commands::forget::duration_secs;
use crate::context;
use crate::output::{StepPrinter, emit};

/// Runs `amber compact`.
///
/// # Errors
/// Bad options; store, metadata and server errors.
pub fn run(g: &Global, args: &CompactArgs) -> Result<ExitCode> {
    let mut req = pb::CompactRequest {
        vault: String::new(),
        dry_run: args.dry_run,
        max_unused: Some(share(&args.max_unused)?),
        max_repack_bytes: args.max_repack.as_deref().map(bytes).transpose()?,
        grace_seconds: Some(duration_secs("--grace", &args.grace)?),
        force_cold: args.force_cold,
    };
    let steps = StepPrinter::new("compact");
    let done = if g.server.is_some() {
        block_on(async {
            let remote = Remote::connect(g).await?;
            req.vault = remote.vault.clone();
            let mut stream = remote
                .admin()
                .compact(remote.request(req))
                .await
                .map_err(|s| failed("cannot compact", &s))?
                .into_inner();
            while let Some(event) = stream.message().await.map_err(|s| failed("compacting failed", &s))? {
                if let Some(s) = &event.step {
                    steps.show(&s.phase, s.done, s.total);
                }
                if let Some(done) = event.done {
                    return Ok(done);
                }
            }
            bail!("the server ended the compaction without its report")
        })?
    } else {
        let repo = context::open(g)?;
        let opts = amber_server::serve::compact::options(&req).map_err(|e| anyhow!("--max-unused: {e}"))?;
        let show = |s: amber_engine::ops::compact::CompactStep| steps.show(s.phase, s.done, s.total);
        let report = amber_engine::ops::compact::compact_with_progress(&repo, &opts, &show)?;
        amber_server::serve::compact::report_to_wire(&report, args.dry_run)
    };
    steps.finish();
    for u in &done.unreadable {
        eprintln!("amber: left alone {}: {}", u.object, u.error);
    }
    emit(g.json, &report_json(&done), || report_text(&done));
    Ok(ExitCode::SUCCESS)
}

/// `5%` or `0.05` as a share.
fn share(text: &str) -> Result<f64> {
    let value = match text.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|v| v / 100.0),
        None => text.trim().parse::<f64>(),
    };
    let v = value.with_context(|| format!("--max-unused {text:?}: give a share such as 5% or 0.05"))?;
    if !(0.0..=1.0).contains(&v) {
        bail!("--max-unused {text:?}: between 0% and 100%");
    }
    Ok(v)
}

/// `500M`, `2G`, `1048576` as bytes (K, M, G, T are powers of 1024).
fn bytes(text: &str) -> Result<u64> {
    let t = text.trim();
    let (digits, shift) = match t.char_indices().last() {
        Some((at, 'K' | 'k')) => (&t[..at], 10),
        Some((at, 'M' | 'm')) => (&t[..at], 20),
        Some((at, 'G' | 'g')) => (&t[..at], 30),
        Some((at, 'T' | 't')) => (&t[..at], 40),
        _ => (t, 0),
    };
    let n: u64 = digits
        .parse()
        .with_context(|| format!("--max-repack {text:?}: give bytes such as 500M or 2G"))?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| anyhow!("--max-repack {text:?}: too large"))
}

fn report_json(r: &pb::CompactResponse) -> Value {
    let unreadable: Vec<Value> = r
        .unreadable
        .iter()
        .map(|u| json!({ "object": u.object, "error": u.error }))
        .collect();
    json!({
        "dry_run": r.dry_run,
        "snapshots": r.snapshots,
        "snapshots_walked": r.snapshots_walked,
        "nodes_read": r.nodes_read,
        "packs": r.packs,
        "stored_bytes": r.stored_bytes,
        "live_bytes": r.live_bytes,
        "deleted": { "packs": r.deleted_packs, "bytes": r.deleted_bytes },
        "repacked": { "packs": r.repacked_packs, "bytes": r.repacked_bytes },
        "condemned": { "packs": r.condemned_packs, "bytes": r.condemned_bytes },
        "pending": { "packs": r.pending_packs, "bytes": r.pending_bytes },
        "revived_packs": r.revived_packs,
        "young_packs": r.young_packs,
        "busy_packs": r.busy_packs,
        "cold_kept": { "packs": r.cold_kept_packs, "bytes": r.cold_kept_bytes, "early_cost_usd": r.cold_early_cost_usd },
        "cold_sparse_packs": r.cold_sparse_packs,
        "deleted_segments": r.deleted_segments,
        "deleted_temp": r.deleted_temp,
        "unreadable": unreadable,
    })
}

fn report_text(r: &pb::CompactResponse) -> String {
    let verb = if r.dry_run { "would delete" } else { "deleted" };
    let mut lines = vec![
        format!(
            "{} snapshots keep {} of {} stored bytes in {} packs",
            r.snapshots, r.live_bytes, r.stored_bytes, r.packs
        ),
        format!("{verb} {} packs ({} bytes)", r.deleted_packs, r.deleted_bytes),
        format!(
            "{} {} packs ({} live bytes copied)",
            if r.dry_run { "would repack" } else { "repacked" },
            r.repacked_packs,
            r.repacked_bytes
        ),
        format!(
            "condemned {} packs ({} bytes); {} packs ({} bytes) wait for the grace period",
            r.condemned_packs, r.condemned_bytes, r.pending_packs, r.pending_bytes
        ),
    ];
    if r.cold_kept_packs > 0 {
        lines.push(format!(
            "kept {} archived packs ({} bytes) until their minimum storage duration: deleting them now would cost ${:.4}",
            r.cold_kept_packs, r.cold_kept_bytes, r.cold_early_cost_usd
        ));
    }
    if r.young_packs > 0 || r.revived_packs > 0 {
        lines.push(format!(
            "{} unused packs younger than the grace period, {} condemned packs in use again: kept",
            r.young_packs, r.revived_packs
        ));
    }
    lines.join("\n")
}
