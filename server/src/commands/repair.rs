//! `amber repair index` and `amber repair snapshots`.

use std::process::ExitCode;

use amber_engine::ops::display_path;
use amber_engine::ops::progress::Step;
use amber_engine::ops::repair::repair_index_with_progress;
use amber_engine::ops::repair::snapshots::{RepairSnapshotsOptions, repair_snapshots};
use amber_proto::v1 as pb;
use amber_server::serve::repair::{index_to_wire, to_wire};
use anyhow::{Result, bail};
use serde_json::{Value, json};

use crate::cli::{Global, RepairCommand};
use crate::client::{Remote, block_on, failed};
use crate::commands::EXIT_INCOMPLETE;
use crate::commands::restore::damaged_paths;
use crate::context;
use crate::output::{StepPrinter, emit};

pub fn run(g: &Global, cmd: &RepairCommand) -> Result<ExitCode> {
    match cmd {
        RepairCommand::Index { dry_run } => index(g, *dry_run),
        RepairCommand::Snapshots { dry_run, snapshots } => snapshots_cmd(g, *dry_run, snapshots),
    }
}

fn index(g: &Global, dry_run: bool) -> Result<ExitCode> {
    let steps = StepPrinter::new("repair index");
    let show = |s: Step| steps.show(s.phase, s.done, s.total);
    let events = if g.server.is_some() {
        remote_index(g, dry_run, &steps)?
    } else {
        let repo = context::open_fresh(g)?;
        index_to_wire(&repair_index_with_progress(&repo, dry_run, &show)?)
    };
    steps.finish();
    print_index(g, &events)
}

/// `amber repair index --server`: the same run through `Admin/RepairIndex`.
fn remote_index(g: &Global, dry_run: bool, steps: &StepPrinter) -> Result<Vec<pb::RepairIndexEvent>> {
    block_on(async {
        let remote = Remote::connect(g).await?;
        let req = pb::RepairIndexRequest {
            vault: remote.vault.clone(),
            dry_run,
        };
        let mut stream = remote
            .admin()
            .repair_index(remote.request(req))
            .await
            .map_err(|s| failed("cannot repair the index", &s))?
            .into_inner();
        let mut events = Vec::new();
        while let Some(event) = stream
            .message()
            .await
            .map_err(|s| failed("repairing the index failed", &s))?
        {
            match &event.step {
                Some(s) => steps.show(&s.phase, s.done, s.total),
                None => events.push(event),
            }
        }
        if events.last().is_none_or(|e| e.done.is_none()) {
            bail!("the server ended the repair without its summary");
        }
        Ok(events)
    })
}

/// Prints the "repair-index" document of `docs/json.md` from the wire events; exit 3 when
/// something could not be recovered.
fn print_index(g: &Global, events: &[pb::RepairIndexEvent]) -> Result<ExitCode> {
    let lost: Vec<&pb::RepairIndexLost> = events.iter().filter_map(|e| e.lost.as_ref()).collect();
    let unrecoverable: Vec<&pb::CompactUnreadable> = events.iter().filter_map(|e| e.unrecoverable.as_ref()).collect();
    let done = events.iter().find_map(|e| e.done).unwrap_or_default();
    for u in &unrecoverable {
        eprintln!("amber: left out {}: {}", u.object, u.error);
    }
    for l in &lost {
        eprintln!("amber: blob {} of pack {} does not open: {}", l.blob, l.pack, l.error);
    }
    let doc = json!({
        "dry_run": done.dry_run,
        "packs": done.packs,
        "blobs": done.blobs,
        "described_packs": done.described_packs,
        "deleted_segments": done.deleted_segments,
        "rescued": { "packs": done.rescued_packs, "blobs": done.rescued_blobs },
        "lost_blobs": lost
            .iter()
            .map(|l| json!({ "blob": l.blob, "pack": l.pack, "error": l.error }))
            .collect::<Vec<_>>(),
        "unrecoverable": unrecoverable
            .iter()
            .map(|u| json!({ "object": u.object, "error": u.error }))
            .collect::<Vec<_>>(),
    });
    emit(g.json, &doc, || index_text(&done, lost.len(), unrecoverable.len()));
    Ok(if lost.is_empty() && unrecoverable.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_INCOMPLETE)
    })
}

fn index_text(r: &pb::RepairIndexDone, lost: usize, unrecoverable: usize) -> String {
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
    if lost > 0 || unrecoverable > 0 {
        lines.push(format!(
            "{lost} blobs and {unrecoverable} packs could not be recovered (named above)"
        ));
    }
    lines.join("\n")
}

fn snapshots_cmd(g: &Global, dry_run: bool, names: &[String]) -> Result<ExitCode> {
    if g.server.is_some() {
        return remote_snapshots(g, dry_run, names);
    }
    let repo = context::open_fresh(g)?;
    let snapshots = names
        .iter()
        .map(|n| repo.resolve_snapshot(n, None).map(|(id, _)| id))
        .collect::<Result<Vec<_>, _>>()?;
    let r = repair_snapshots(&repo, &RepairSnapshotsOptions { snapshots, dry_run })?;
    print_snapshots(g, &to_wire(&r))
}

/// `amber repair snapshots --server`: the same run through `Admin/RepairSnapshots`.
fn remote_snapshots(g: &Global, dry_run: bool, names: &[String]) -> Result<ExitCode> {
    block_on(async {
        let remote = Remote::connect(g).await?;
        let req = pb::RepairSnapshotsRequest {
            vault: remote.vault.clone(),
            dry_run,
            snapshots: names.to_vec(),
        };
        let mut stream = remote
            .admin()
            .repair_snapshots(remote.request(req))
            .await
            .map_err(|s| failed("cannot repair snapshots", &s))?
            .into_inner();
        let mut events = Vec::new();
        while let Some(event) = stream.message().await.map_err(|s| failed("repairing failed", &s))? {
            events.push(event);
        }
        if events.last().is_none_or(|e| e.done.is_none()) {
            bail!("the server ended the repair without its summary");
        }
        print_snapshots(g, &events)
    })
}

/// Prints the "repair-snapshots" document of `docs/json.md` from the wire events; exit 3
/// when a snapshot could not be repaired.
fn print_snapshots(g: &Global, events: &[pb::RepairSnapshotsEvent]) -> Result<ExitCode> {
    let repaired: Vec<&pb::RepairedSnapshot> = events.iter().filter_map(|e| e.repaired.as_ref()).collect();
    let unrepairable: Vec<&pb::RepairUnrepairable> = events.iter().filter_map(|e| e.unrepairable.as_ref()).collect();
    let done = events.iter().find_map(|e| e.done.clone()).unwrap_or_default();
    for u in &unrepairable {
        eprintln!("amber: snapshot {} cannot be repaired: {}", u.snapshot, u.error);
    }
    let doc = json!({
        "dry_run": done.dry_run,
        "checked": done.checked,
        "repaired": repaired.iter().map(|s| repaired_json(s)).collect::<Vec<_>>(),
        "unchanged": done.unchanged,
        "unrepairable": unrepairable
            .iter()
            .map(|u| json!({ "snapshot": u.snapshot, "error": u.error }))
            .collect::<Vec<_>>(),
    });
    emit(g.json, &doc, || snapshots_text(&repaired, &done));
    Ok(if unrepairable.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_INCOMPLETE)
    })
}

fn repaired_json(s: &pb::RepairedSnapshot) -> Value {
    let paths: Vec<(Vec<u8>, Option<u64>)> = s.paths.iter().map(|p| (p.path.clone(), p.lost_bytes)).collect();
    json!({
        "original": s.original,
        "repaired": (!s.repaired.is_empty()).then_some(&s.repaired),
        "kind": s.kind,
        "files": s.files,
        "dirs": s.dirs,
        "lost_bytes": s.lost_bytes,
        "parts": s.parts,
        "paths": damaged_paths(&paths),
    })
}

fn snapshots_text(repaired: &[&pb::RepairedSnapshot], done: &pb::RepairSnapshotsDone) -> String {
    if done.checked == 0 {
        return "no snapshot is short of data: nothing to repair".into();
    }
    let short = |id: &str| id.get(..8).unwrap_or(id).to_string();
    let mut lines = Vec::new();
    for s in repaired {
        let head = if s.repaired.is_empty() {
            format!("snapshot {} would be repaired", short(&s.original))
        } else {
            format!("snapshot {} repaired as {}", short(&s.original), short(&s.repaired))
        };
        lines.push(format!(
            "{head}: {} files and {} directories marked damaged, {} bytes lost, {} parts replaced",
            s.files, s.dirs, s.lost_bytes, s.parts
        ));
        lines.extend(s.paths.iter().map(|p| format!("  damaged: {}", display_path(&p.path))));
    }
    for id in &done.unchanged {
        lines.push(format!("snapshot {} needs no new snapshot", short(id)));
    }
    if !done.dry_run && !repaired.is_empty() {
        lines.push("the originals are kept: `amber forget` them once the repaired snapshots are checked".into());
    }
    lines.join("\n")
}
