//! `restore`.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use amber_engine::format::snapshot::SourceKind;
use amber_engine::id::SnapshotId;
use amber_engine::id::TreeId;
use amber_engine::ops::block::{BlockRestoreOptions, restore_block};
use amber_engine::ops::display_path;
use amber_engine::ops::extract::extract_layer;
use amber_engine::ops::image::{ImageFormat, restore_image};
use amber_engine::ops::restore::{PathError, RestoreOptions, restore_tree};
use amber_engine::ops::tar::restore_tar;
use amber_engine::repo::Repository;
use anyhow::{Context, Result, bail};
use serde_json::{Map, Value, json};

use crate::cli::Global;
use crate::commands::EXIT_INCOMPLETE;
use crate::commands::inspect::extend;
use crate::context;
use crate::output::{ProgressDisplay, bytes, emit, put_path};

/// The fields every restore document starts with: the snapshot's id, its kind and where it
/// was written (`docs/json.md`).
pub fn restore_head(id: &str, kind: &str, target: &Path) -> Map<String, Value> {
    let mut obj = Map::new();
    obj.insert("snapshot".into(), json!(id));
    obj.insert("kind".into(), json!(kind));
    put_path(&mut obj, "target", target.as_os_str().as_bytes());
    obj
}

/// `errors` and `warnings` entries: `{path, error}`.
pub fn path_errors(v: &[PathError]) -> Value {
    v.iter()
        .map(|e| {
            let mut obj = Map::new();
            put_path(&mut obj, "path", &e.path);
            obj.insert("error".into(), json!(e.message));
            Value::Object(obj)
        })
        .collect()
}

/// The `damaged` entries of a tree restore: `{path, lost_bytes}` (`lost_bytes` null for a
/// directory whose entries are lost).
pub fn damaged_paths(v: &[(Vec<u8>, Option<u64>)]) -> Value {
    v.iter()
        .map(|(path, lost)| {
            let mut obj = Map::new();
            put_path(&mut obj, "path", path);
            obj.insert("lost_bytes".into(), json!(lost));
            Value::Object(obj)
        })
        .collect()
}

/// The stderr line for an entry marked damaged, restored in part.
pub fn damaged_line(path: &[u8], lost: Option<u64>) -> String {
    match lost {
        Some(n) => format!("damaged: {}: {n} bytes lost, left as zeros", display_path(path)),
        None => format!(
            "damaged: {}: directory entries lost, restored empty",
            display_path(path)
        ),
    }
}

/// The text line of a tree restore.
pub fn restored_line(id: &str, dest: &Path, files: u64, dirs: u64, bytes_done: u64, failed: usize) -> String {
    format!(
        "restored snapshot {} to {}: {files} files, {dirs} dirs, {}{}",
        id.get(..8).unwrap_or(id),
        dest.display(),
        bytes(bytes_done),
        if failed == 0 {
            String::new()
        } else {
            format!(", {failed} paths FAILED")
        }
    )
}

pub fn run(g: &Global, name: &str, dest: &Path, include: Vec<String>, whiteouts: bool) -> Result<ExitCode> {
    let started = Instant::now();
    let repo = context::open_read(g)?;
    let (id, snap) = repo.resolve_snapshot(name, g.env.as_deref())?;
    match snap.source {
        SourceKind::Tree => {}
        SourceKind::TarLayer if include.is_empty() => return extract(g, &repo, id, dest, whiteouts),
        SourceKind::TarLayer => bail!("--include applies to tree snapshots; snapshot {id} is a tar layer"),
        SourceKind::BlockVolume => bail!("snapshot {id} is a block volume: restore it with --block OUT"),
        SourceKind::Image => bail!("snapshot {id} is a container image: restore it with --image OUT"),
        SourceKind::Environment => {
            bail!("snapshot {id} is an environment: restore it with `amber env restore {id} --into DIR`")
        }
    }
    let display = ProgressDisplay::start("restore");
    let opts = RestoreOptions {
        include,
        threads: g.threads,
        progress: Some(display.counters()),
        root_entry: snap.root_entry.clone(),
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
    let damaged: Vec<(Vec<u8>, Option<u64>)> = r.damaged.iter().map(|d| (d.path.clone(), d.lost_bytes)).collect();
    for (path, lost) in &damaged {
        eprintln!("{}", damaged_line(path, *lost));
    }
    let mut obj = restore_head(&id.to_hex(), "tree", dest);
    let counts = json!({
        "files": r.files,
        "dirs": r.dirs,
        "others": r.others,
        "bytes": r.bytes,
        "errors": path_errors(&r.errors),
        "warnings": path_errors(&r.warnings),
        "damaged": damaged_paths(&damaged),
        "duration_seconds": started.elapsed().as_secs_f64(),
    });
    extend(&mut obj, counts);
    emit(g.json, &Value::Object(obj), || {
        restored_line(&id.to_hex(), dest, r.files, r.dirs, r.bytes, r.errors.len())
    });
    Ok(if r.errors.is_empty() && damaged.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_INCOMPLETE)
    })
}

pub fn block(g: &Global, name: &str, out: &Path, seed: Option<PathBuf>) -> Result<ExitCode> {
    let started = Instant::now();
    let repo = context::open_read(g)?;
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
    let mut obj = restore_head(&id.to_hex(), "block", out);
    let counts = json!({
        "size": r.size,
        "blocks": r.blocks,
        "holes": r.holes,
        "from_repo": r.from_repo,
        "from_seed": r.from_seed,
        "bytes_written": r.bytes_written,
        "lost_bytes": r.lost_bytes,
        "lost_ranges": r.lost_ranges,
        "duration_seconds": started.elapsed().as_secs_f64(),
    });
    extend(&mut obj, counts);
    let value = Value::Object(obj);
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
    if r.lost_bytes > 0 {
        eprintln!(
            "damaged: the volume was marked damaged by a repair: {} bytes lost, left as zeros",
            r.lost_bytes
        );
        return Ok(ExitCode::from(EXIT_INCOMPLETE));
    }
    Ok(ExitCode::SUCCESS)
}

fn extract(g: &Global, repo: &Repository, id: SnapshotId, dest: &Path, whiteouts: bool) -> Result<ExitCode> {
    let started = Instant::now();
    let r = extract_layer(repo, id, dest, whiteouts)?;
    for (path, why) in &r.skipped {
        eprintln!("warning: skipped {path}: {why}");
    }
    let skipped: Vec<PathError> = r
        .skipped
        .iter()
        .map(|(p, why)| PathError {
            path: p.as_bytes().to_vec(),
            message: why.clone(),
        })
        .collect();
    let mut obj = restore_head(&id.to_hex(), "tar", dest);
    let counts = json!({
        "members": r.members,
        "whiteouts": r.whiteouts,
        "skipped": skipped.len(),
        "skipped_paths": path_errors(&skipped),
        "errors": [],
        "warnings": [],
        "duration_seconds": started.elapsed().as_secs_f64(),
    });
    extend(&mut obj, counts);
    emit(g.json, &Value::Object(obj), || {
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

/// `restore SNAPSHOT --image OUT [--format F]`.
pub fn image(g: &Global, name: &str, out: &Path, format: Option<&str>) -> Result<ExitCode> {
    let started = Instant::now();
    let repo = context::open_read(g)?;
    let (id, _) = repo.resolve_snapshot(name, g.env.as_deref())?;
    let format = format.map(ImageFormat::parse).transpose()?;
    let display = ProgressDisplay::start("restore");
    let result = restore_image(&repo, id, out, format);
    display.finish();
    let r = result?;
    let mut obj = restore_head(&id.to_hex(), "image", out);
    let counts = json!({
        "format": r.format,
        "files": r.files,
        "layers": r.layers,
        "bytes": r.bytes,
        "duration_seconds": started.elapsed().as_secs_f64(),
    });
    extend(&mut obj, counts);
    emit(g.json, &Value::Object(obj), || {
        format!(
            "restored image {} to {} as {}: {} files, {} layers, {}; every digest verified",
            id.short(),
            out.display(),
            r.format,
            r.files,
            r.layers,
            bytes(r.bytes)
        )
    });
    Ok(ExitCode::SUCCESS)
}

pub fn tar(g: &Global, name: &str, out: &Path) -> Result<ExitCode> {
    let started = Instant::now();
    let repo = context::open_read(g)?;
    let (id, snap) = repo.resolve_snapshot(name, g.env.as_deref())?;
    let to_stdout = out.as_os_str() == "-";
    let size = if to_stdout {
        crate::output::stdout_is_data();
        let stdout = std::io::stdout();
        let mut lock = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
        let n = restore_tar(&repo, id, &mut lock)?;
        std::io::Write::flush(&mut lock).context("cannot write the layer to stdout")?;
        n
    } else {
        tar_to_file(&repo, id, out)?
    };
    let mut obj = restore_head(&id.to_hex(), "tar", out);
    let counts = json!({
        "bytes": size,
        "diff_id": amber_engine::ops::tar::recorded_diff_id(&snap),
        "duration_seconds": started.elapsed().as_secs_f64(),
    });
    extend(&mut obj, counts);
    emit(g.json, &Value::Object(obj), || {
        format!(
            "rebuilt layer {} into {} ({}), digest verified",
            id.short(),
            out.display(),
            bytes(size)
        )
    });
    Ok(ExitCode::SUCCESS)
}

/// Writes the layer beside `out`, then renames: a failed rebuild leaves no half file behind.
fn tar_to_file(repo: &Repository, id: SnapshotId, out: &Path) -> Result<u64> {
    let tmp = out.with_extension("amber-partial");
    let file = std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    let result = restore_tar(repo, id, &mut w).and_then(|n| {
        std::io::Write::flush(&mut w).map_err(|e| amber_engine::Error::io(&tmp, e))?;
        Ok(n)
    });
    match result {
        Ok(n) => {
            std::fs::rename(&tmp, out).with_context(|| format!("cannot rename to {}", out.display()))?;
            Ok(n)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e.into())
        }
    }
}
