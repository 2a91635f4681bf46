//! `amber repair index` and `amber repair snapshots`.

use std::process::ExitCode;

use amber_engine::ops::display_path;
use amber_engine::ops::repair::snapshots::{RepairSnapshotsOptions, RepairSnapshotsReport, repair_snapshots};
use amber_engine::ops::repair::{RepairIndexReport, repair_index};
use anyhow::Result;
use serde_json::{Value, json};

use crate::cli::{Global, RepairCommand};
use crate::commands::EXIT_INCOMPLETE;
use crate::context;
use crate::output::emit;

pub fn run(g: &Global, cmd: &RepairCommand) -> Result<ExitCode> {
    match cmd {
        RepairCommand::Index { dry_run } => index(g, *dry_run),
        RepairCommand::Snapshots { dry_run, snapshots } => snapshots_cmd(g, *dry_run, snapshots),
    }
}

fn index(g: &Global, dry_run: bool) -> Result<ExitCode> {
    let repo = context::open_fresh(g)?;
    let r = repair_index(&repo, dry_run)?;
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

fn snapshots_cmd(g: &Global, dry_run: bool, names: &[String]) -> Result<ExitCode> {
    let repo = context::open_fresh(g)?;
    let snapshots = names
        .iter()
        .map(|n| repo.resolve_snapshot(n, None).map(|(id, _)| id))
        .collect::<Result<Vec<_>, _>>()?;
    let r = repair_snapshots(&repo, &RepairSnapshotsOptions { snapshots, dry_run })?;
    for (id, why) in &r.unrepairable {
        eprintln!("amber: snapshot {id} cannot be repaired: {why}");
    }
    emit(g.json, &snapshots_json(&r), || snapshots_text(&r));
    if r.unrepairable.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::from(EXIT_INCOMPLETE))
    }
}

/// The "repair-snapshots" document of `docs/json.md`.
fn snapshots_json(r: &RepairSnapshotsReport) -> Value {
    let repaired: Vec<Value> = r
        .repaired
        .iter()
        .map(|s| {
            let paths = crate::commands::restore::damaged_paths(&s.paths);
            json!({
                "original": s.original.to_hex(),
                "repaired": s.repaired.map(|id| id.to_hex()),
                "kind": s.kind,
                "files": s.files,
                "dirs": s.dirs,
                "lost_bytes": s.lost_bytes,
                "parts": s.parts,
                "paths": paths,
            })
        })
        .collect();
    let unrepairable: Vec<Value> = r
        .unrepairable
        .iter()
        .map(|(id, why)| json!({ "snapshot": id.to_hex(), "error": why }))
        .collect();
    let unchanged: Vec<String> = r.unchanged.iter().map(|id| id.to_hex()).collect();
    json!({
        "dry_run": r.dry_run,
        "checked": r.checked,
        "repaired": repaired,
        "unchanged": unchanged,
        "unrepairable": unrepairable,
    })
}

fn snapshots_text(r: &RepairSnapshotsReport) -> String {
    if r.checked == 0 && r.unrepairable.is_empty() {
        return "no snapshot is short of data: nothing to repair".into();
    }
    let mut lines = Vec::new();
    for s in &r.repaired {
        let short = &s.original.to_hex()[..8];
        let head = match s.repaired {
            Some(new) => format!("snapshot {short} repaired as {}", &new.to_hex()[..8]),
            None => format!("snapshot {short} would be repaired"),
        };
        lines.push(format!(
            "{head}: {} files and {} directories marked damaged, {} bytes lost, {} parts replaced",
            s.files, s.dirs, s.lost_bytes, s.parts
        ));
        lines.extend(s.paths.iter().map(|(p, _)| format!("  damaged: {}", display_path(p))));
    }
    for id in &r.unchanged {
        lines.push(format!("snapshot {} needs no new snapshot", &id.to_hex()[..8]));
    }
    if r.repaired.iter().any(|s| s.repaired.is_some()) {
        lines.push("the originals are kept: `amber forget` them once the repaired snapshots are checked".into());
    }
    lines.join("\n")
}
