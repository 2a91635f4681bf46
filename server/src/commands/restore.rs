//! `restore`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use amber_engine::format::snapshot::SourceKind;
use amber_engine::id::TreeId;
use amber_engine::ops::block::{BlockRestoreOptions, restore_block};
use amber_engine::ops::restore::{RestoreOptions, restore_tree};
use anyhow::{Result, bail};
use serde_json::json;

use crate::cli::Global;
use crate::commands::EXIT_INCOMPLETE;
use crate::context;
use crate::output::{ProgressDisplay, bytes, emit};

pub fn run(g: &Global, name: &str, dest: &Path, include: Vec<String>) -> Result<ExitCode> {
    let repo = context::open(g)?;
    let (id, snap) = repo.resolve_snapshot(name, g.env.as_deref())?;
    if snap.source != SourceKind::Tree {
        bail!(
            "snapshot {id} is a {} snapshot; this build restores trees",
            snap.source.name()
        );
    }
    let display = ProgressDisplay::start("restore");
    let opts = RestoreOptions {
        include,
        threads: g.threads,
        progress: Some(display.counters()),
    };
    let result = restore_tree(&repo, TreeId::new(snap.root), dest, &opts);
    display.finish();
    let r = result?;
    for e in &r.errors {
        eprintln!("error: {}: {}", e.path, e.message);
    }
    for w in &r.warnings {
        eprintln!("warning: {}: {}", w.path, w.message);
    }
    let list = |v: &[amber_engine::ops::restore::PathError]| {
        v.iter()
            .map(|e| json!({ "path": e.path, "error": e.message }))
            .collect::<Vec<_>>()
    };
    let value = json!({
        "snapshot": id.to_hex(),
        "files": r.files,
        "dirs": r.dirs,
        "others": r.others,
        "bytes": r.bytes,
        "errors": list(&r.errors),
        "warnings": list(&r.warnings),
    });
    emit(g.json, &value, || {
        format!(
            "restored snapshot {} to {}: {} files, {} dirs, {}{}",
            id.short(),
            dest.display(),
            r.files,
            r.dirs,
            bytes(r.bytes),
            if r.errors.is_empty() {
                String::new()
            } else {
                format!(", {} paths FAILED", r.errors.len())
            }
        )
    });
    Ok(if r.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_INCOMPLETE)
    })
}

pub fn block(g: &Global, name: &str, out: &Path, seed: Option<PathBuf>) -> Result<ExitCode> {
    let repo = context::open(g)?;
    let (id, _) = repo.resolve_snapshot(name, g.env.as_deref())?;
    let display = ProgressDisplay::start("restore");
    let opts = BlockRestoreOptions {
        seed,
        threads: g.threads,
        progress: Some(display.counters()),
    };
    let result = restore_block(&repo, id, out, &opts);
    display.finish();
    let r = result?;
    let value = json!({
        "snapshot": id.to_hex(),
        "size": r.size,
        "blocks": r.blocks,
        "holes": r.holes,
        "from_repo": r.from_repo,
        "from_seed": r.from_seed,
        "bytes_written": r.bytes_written,
    });
    emit(g.json, &value, || {
        format!(
            "restored volume {} to {}: {}, {} blocks ({} holes, {} from the repository, {} from the seed)",
            id.short(),
            out.display(),
            bytes(r.size),
            r.blocks,
            r.holes,
            r.from_repo,
            r.from_seed
        )
    });
    Ok(ExitCode::SUCCESS)
}
