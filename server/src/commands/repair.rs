//! `amber repair index`.

use std::process::ExitCode;

use amber_engine::ops::repair::{RepairIndexReport, repair_index};
use anyhow::Result;
use serde_json::{Value, json};

use crate::cli::{Global, RepairCommand};
use crate::commands::EXIT_INCOMPLETE;
use crate::context;
use crate::output::emit;

pub fn run(g: &Global, cmd: &RepairCommand) -> Result<ExitCode> {
    let RepairCommand::Index { dry_run } = cmd;
    let repo = context::open_fresh(g)?;
    let r = repair_index(&repo, *dry_run)?;
    for (object, why) in &r.unrecoverable {
        eprintln!("amber: left out {object}: {why}");
    }
    for (blob, pack, why) in &r.lost_blobs {
        eprintln!("amber: blob {blob} of pack {pack} does not open: {why}");
    }
    emit(g.json, &report_json(&r), || report_text(&r));
    if r.unrecoverable.is_empty() && r.lost_blobs.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::from(EXIT_INCOMPLETE))
    }
}

fn report_json(r: &RepairIndexReport) -> Value {
    let lost: Vec<Value> = r
        .lost_blobs
        .iter()
        .map(|(blob, pack, why)| json!({ "blob": blob.to_hex(), "pack": pack.to_hex(), "error": why }))
        .collect();
    let unrecoverable: Vec<Value> = r
        .unrecoverable
        .iter()
        .map(|(object, why)| json!({ "object": object, "error": why }))
        .collect();
    json!({
        "dry_run": r.dry_run,
        "packs": r.packs,
        "blobs": r.blobs,
        "described_packs": r.described_packs,
        "deleted_segments": r.deleted_segments,
        "rescued": { "packs": r.rescued_packs, "blobs": r.rescued_blobs },
        "lost_blobs": lost,
        "unrecoverable": unrecoverable,
    })
}

fn report_text(r: &RepairIndexReport) -> String {
    let (rebuilt, described, copied) = if r.dry_run {
        ("would rebuild the index", "would describe", "would copy")
    } else {
        ("rebuilt the index", "described", "copied")
    };
    let mut lines = vec![format!("{rebuilt} from {} packs: {} blobs", r.packs, r.blobs)];
    if r.described_packs > 0 || r.deleted_segments > 0 {
        lines.push(format!(
            "{described} {} packs in new index segments in place of {} damaged segments",
            r.described_packs, r.deleted_segments
        ));
    }
    if r.rescued_packs > 0 {
        lines.push(format!(
            "{copied} {} blobs out of {} packs with a damaged header or directory into new packs; \
             the damaged packs are condemned (`amber compact` deletes them after the grace period)",
            r.rescued_blobs, r.rescued_packs
        ));
    }
    if !r.lost_blobs.is_empty() || !r.unrecoverable.is_empty() {
        lines.push(format!(
            "{} blobs and {} packs could not be recovered (named above)",
            r.lost_blobs.len(),
            r.unrecoverable.len()
        ));
    }
    lines.join("\n")
}
