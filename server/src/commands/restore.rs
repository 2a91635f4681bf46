//! `restore`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use amber_engine::format::snapshot::SourceKind;
use amber_engine::id::SnapshotId;
use amber_engine::id::TreeId;
use amber_engine::ops::display_path;
use amber_engine::ops::block::{BlockRestoreOptions, restore_block};
use amber_engine::ops::extract::extract_layer;
use amber_engine::ops::restore::{RestoreOptions, restore_tree};
use amber_engine::ops::tar::restore_tar;
use amber_engine::repo::Repository;
use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::cli::Global;
use crate::commands::EXIT_INCOMPLETE;
use crate::context;
use crate::output::{ProgressDisplay, bytes, emit, put_path};

pub fn run(g: &Global, name: &str, dest: &Path, include: Vec<String>, whiteouts: bool) -> Result<ExitCode> {
    let repo = context::open(g)?;
    let (id, snap) = repo.resolve_snapshot(name, g.env.as_deref())?;
    match snap.source {
        SourceKind::Tree => {}
        SourceKind::TarLayer => return extract(g, &repo, id, dest, whiteouts),
        SourceKind::BlockVolume => bail!("snapshot {id} is a block volume: restore it with --block OUT"),
    }
    let display = ProgressDisplay::start("restore");
    let opts = RestoreOptions {
        include,
        threads: g.threads,
        progress: Some(display.counters()),
        root_entry: None,
    };
    let result = restore_tree(&repo, TreeId::new(snap.root), dest, &opts);
    display.finish();
    let r = result?;
    for e in &r.errors {
        eprintln!("error: {}: {}", display_path(&e.path), e.message);
    }
    for w in &r.warnings {
        eprintln!("warning: {}: {}", display_path(&w.path), w.message);
    }
    let list = |v: &[amber_engine::ops::restore::PathError]| {
        v.iter()
            .map(|e| {
                let mut obj = serde_json::Map::new();
                put_path(&mut obj, "path", &e.path);
                obj.insert("error".into(), json!(e.message));
                serde_json::Value::Object(obj)
            })
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

fn extract(g: &Global, repo: &Repository, id: SnapshotId, dest: &Path, whiteouts: bool) -> Result<ExitCode> {
    let r = extract_layer(repo, id, dest, whiteouts)?;
    for (path, why) in &r.skipped {
        eprintln!("warning: skipped {path}: {why}");
    }
    let value = json!({
        "snapshot": id.to_hex(),
        "members": r.members,
        "whiteouts": r.whiteouts,
        "skipped": r.skipped.iter().map(|(p, w)| json!({ "path": p, "error": w })).collect::<Vec<_>>(),
        "errors": Vec::<String>::new(),
    });
    emit(g.json, &value, || {
        format!(
            "extracted layer {} into {}: {} members, {} whiteouts applied",
            id.short(),
            dest.display(),
            r.members,
            r.whiteouts
        )
    });
    Ok(ExitCode::SUCCESS)
}

pub fn tar(g: &Global, name: &str, out: &Path) -> Result<ExitCode> {
    let repo = context::open(g)?;
    let (id, _) = repo.resolve_snapshot(name, g.env.as_deref())?;
    let to_stdout = out.as_os_str() == "-";
    let size = if to_stdout {
        let stdout = std::io::stdout();
        let mut lock = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
        restore_tar(&repo, id, &mut lock)?
    } else {
        // Write beside the target, then rename: a failed rebuild leaves no half file behind.
        let tmp = out.with_extension("amber-partial");
        let file = std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
        let result = restore_tar(&repo, id, &mut w).and_then(|n| {
            std::io::Write::flush(&mut w).map_err(|e| amber_engine::Error::io(&tmp, e))?;
            Ok(n)
        });
        match result {
            Ok(n) => {
                std::fs::rename(&tmp, out).with_context(|| format!("cannot rename to {}", out.display()))?;
                n
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e.into());
            }
        }
    };
    if !to_stdout {
        emit(g.json, &json!({ "snapshot": id.to_hex(), "bytes": size }), || {
            format!(
                "rebuilt layer {} into {} ({}), digest verified",
                id.short(),
                out.display(),
                bytes(size)
            )
        });
    } else {
        eprintln!("rebuilt layer {} ({}), digest verified", id.short(), bytes(size));
    }
    Ok(ExitCode::SUCCESS)
}
