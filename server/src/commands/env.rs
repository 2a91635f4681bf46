//! `env snapshot`, `env restore` and `envs` on a local repository.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use amber_engine::format::snapshot::{Snapshot, SourceKind};
use amber_engine::id::{SnapshotId, TreeId};
use amber_engine::ops::Labels;
use amber_engine::ops::block::{BlockOptions, BlockRestoreOptions, restore_block, snapshot_block};
use amber_engine::ops::environment::{Part, PartKind, commit_environment, parts_of};
use amber_engine::ops::image::{ImageOptions, restore_image, snapshot_image};
use amber_engine::ops::ingest::{ParentChoice, TreeOptions, snapshot_paths};
use amber_engine::ops::restore::{RestoreOptions, restore_tree};
use amber_engine::repo::Repository;
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::cli::{EnvCommand, EnvSnapshotArgs, Global};
use crate::commands::EXIT_INCOMPLETE;
use crate::context;
use crate::output::{emit, put_time};

pub mod validate;

/// Runs an `env` command locally.
pub fn local(g: &Global, cmd: &EnvCommand) -> Result<ExitCode> {
    match cmd {
        EnvCommand::Snapshot(args) => snapshot(g, args),
        EnvCommand::Restore { snapshot, into } => restore(g, snapshot, into),
    }
}

/// The labels of every part: the environment's name, lab, researcher, tags and free
/// metadata.
pub fn part_labels(g: &Global, a: &EnvSnapshotArgs) -> Result<Labels> {
    let environment = g
        .env
        .clone()
        .context("give --env NAME: an environment snapshot belongs to one environment")?;
    Ok(Labels {
        environment,
        lab: a.lab.clone(),
        researcher: a.researcher.clone(),
        tags: a.tags.clone(),
        metadata: a.metadata.clone(),
        hostname: None,
        time_ns: None,
    })
}

/// The environment snapshot's own labels: the parts' plus the record (experiment, funding,
/// criticality, packages).
pub fn record_labels(parts: &Labels, a: &EnvSnapshotArgs) -> Labels {
    let mut labels = parts.clone();
    for (k, v) in [
        ("experiment", a.experiment.clone()),
        ("funding", a.funding.clone()),
        ("criticality", a.criticality.clone()),
        ("packages", a.packages.join("\n")),
    ] {
        if !v.is_empty() {
            labels.metadata.push((k.into(), v));
        }
    }
    labels
}

/// One part's line of the `env-snapshot` document.
pub fn part_json(kind: PartKind, mount: &str, id: &str, bytes_new: u64) -> Value {
    json!({
        "kind": kind.name(),
        "mount": (!mount.is_empty()).then_some(mount),
        "snapshot": id,
        "bytes_new": bytes_new,
    })
}

fn snapshot(g: &Global, a: &EnvSnapshotArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let labels = part_labels(g, a)?;
    if a.image.is_none() && a.trees.is_empty() && a.volume.is_none() {
        bail!("give the environment's parts: --image PATH, --tree MOUNT=DIR, --volume MOUNT=IMAGE");
    }
    let repo = context::open(g)?;
    let mut parts = Vec::new();
    let mut shown = Vec::new();
    if let Some(path) = &a.image {
        let opts = ImageOptions {
            labels: labels.clone(),
            progress: None,
        };
        let s = snapshot_image(&repo, path, &opts).with_context(|| format!("part image {}", path.display()))?;
        shown.push(part_json(PartKind::Image, "", &s.id.to_hex(), s.written.bytes_new));
        parts.push(Part {
            kind: PartKind::Image,
            snapshot: s.id,
            mount: String::new(),
        });
    }
    for (mount, dir) in &a.trees {
        let opts = TreeOptions {
            labels: labels.clone(),
            parent: ParentChoice::Auto,
            threads: g.threads,
            progress: None,
            exclude: Default::default(),
        };
        let s =
            snapshot_paths(&repo, std::slice::from_ref(dir), &opts).with_context(|| format!("part tree {mount}"))?;
        if !s.skipped.is_empty() {
            bail!(
                "part tree {mount}: {} paths could not be read (first: {}); no environment snapshot was committed",
                s.skipped.len(),
                s.skipped
                    .first()
                    .map(|(p, why)| format!("{p}: {why}"))
                    .unwrap_or_default()
            );
        }
        shown.push(part_json(PartKind::Tree, mount, &s.id.to_hex(), s.written.bytes_new));
        parts.push(Part {
            kind: PartKind::Tree,
            snapshot: s.id,
            mount: mount.clone(),
        });
    }
    if let Some((mount, image)) = &a.volume {
        let opts = BlockOptions {
            labels: labels.clone(),
            parent: None,
            changed_ranges: None,
            threads: g.threads,
            progress: None,
        };
        let s = snapshot_block(&repo, image, &opts).with_context(|| format!("part volume {mount}"))?;
        shown.push(part_json(PartKind::Volume, mount, &s.id.to_hex(), s.written.bytes_new));
        parts.push(Part {
            kind: PartKind::Volume,
            snapshot: s.id,
            mount: mount.clone(),
        });
    }
    let (id, snap) = commit_environment(&repo, &parts, &record_labels(&labels, a))?;
    print_committed(g, &id.to_hex(), &snap.environment, shown, started);
    Ok(ExitCode::SUCCESS)
}

/// Prints the `env-snapshot` document.
pub fn print_committed(g: &Global, id: &str, environment: &str, parts: Vec<Value>, started: Instant) {
    let lines: Vec<String> = parts
        .iter()
        .map(|p| {
            format!(
                "  {} {} {}",
                p["kind"].as_str().unwrap_or_default(),
                p["mount"].as_str().unwrap_or("-"),
                p["snapshot"].as_str().unwrap_or_default()
            )
        })
        .collect();
    let value = json!({
        "id": id,
        "kind": "environment",
        "environment": environment,
        "parts": parts,
        "duration_seconds": started.elapsed().as_secs_f64(),
    });
    emit(g.json, &value, || {
        format!("environment snapshot {id} of {environment}:\n{}", lines.join("\n"))
    });
}

/// The newest environment snapshot (of `env` when given) for `latest`; otherwise the
/// snapshot named, which must be an environment.
pub fn resolve_environment(repo: &Repository, name: &str, env: Option<&str>) -> Result<(SnapshotId, Snapshot)> {
    if name == "latest" {
        return repo
            .snapshots()?
            .into_iter()
            .rev()
            .find(|(_, s)| s.source == SourceKind::Environment && env.is_none_or(|e| s.environment == e))
            .with_context(|| match env {
                Some(e) => format!("no environment snapshot of {e}"),
                None => "no environment snapshot".into(),
            });
    }
    let (id, snap) = repo.resolve_snapshot(name, env)?;
    if snap.source != SourceKind::Environment {
        bail!("snapshot {id} is a {} snapshot, not an environment", snap.source.name());
    }
    Ok((id, snap))
}

/// Where a mounted part goes under the restore directory: `trees/home/researcher/notebooks`.
pub fn mounted_at(into: &Path, top: &str, mount: &str) -> PathBuf {
    into.join(top).join(mount.trim_start_matches('/'))
}

fn restore(g: &Global, name: &str, into: &Path) -> Result<ExitCode> {
    let started = Instant::now();
    let repo = context::open_read(g)?;
    let (id, snap) = resolve_environment(&repo, name, g.env.as_deref())?;
    if into.exists() && std::fs::read_dir(into)?.next().is_some() {
        bail!("{} is not empty", into.display());
    }
    let parts = parts_of(&repo, id, &snap)?;
    let mut report = validate::Report::default();
    for part in &parts {
        let done = restore_part(g, &repo, part, into);
        report.step(part, "restore", done.map(|detail| (detail, Value::Null)));
    }
    let facts = validate::Facts::local(&repo, &parts)?;
    validate::all(&facts, &snap, &parts, into, &mut report);
    finish_restore(g, &id.to_hex(), &snap, into, &report, started)
}

/// Writes `DIR/environment.json`, prints the `env-restore` document, and gives the exit
/// status (3 when a step failed).
pub fn finish_restore(
    g: &Global,
    id: &str,
    snap: &Snapshot,
    into: &Path,
    report: &validate::Report,
    started: Instant,
) -> Result<ExitCode> {
    let value = json!({
        "snapshot": id,
        "kind": "environment",
        "target": into.display().to_string(),
        "environment": snap.environment,
        "ok": report.ok(),
        "steps": report.steps,
        "notebooks": report.notebooks,
        "duration_seconds": started.elapsed().as_secs_f64(),
    });
    let mut record = value.clone();
    if let Value::Object(obj) = &mut record {
        put_record(obj, snap);
    }
    std::fs::create_dir_all(into)?;
    std::fs::write(into.join("environment.json"), serde_json::to_vec_pretty(&record)?)?;
    emit(g.json, &value, || report.text(id, into));
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_INCOMPLETE)
    })
}

fn restore_part(g: &Global, repo: &Repository, part: &Part, into: &Path) -> Result<String> {
    match part.kind {
        PartKind::Image => {
            let out = into.join("image");
            let r = restore_image(repo, part.snapshot, &out, None)?;
            Ok(format!("{} files, {} layers into {}", r.files, r.layers, out.display()))
        }
        PartKind::Tree => {
            let dest = mounted_at(into, "trees", &part.mount);
            let snap = repo.load_snapshot(part.snapshot)?;
            let opts = RestoreOptions {
                include: Vec::new(),
                threads: g.threads,
                progress: None,
                root_entry: snap.root_entry.clone(),
            };
            let r = restore_tree(repo, TreeId::new(snap.root), &dest, &opts)?;
            if let Some(e) = r.errors.first() {
                bail!(
                    "{} paths failed, first {}: {}",
                    r.errors.len(),
                    amber_engine::ops::display_path(&e.path),
                    e.message
                );
            }
            if let Some(d) = r.damaged.first() {
                bail!(
                    "restored in part into {}: {} entries marked damaged by a repair are short of data, first {}",
                    dest.display(),
                    r.damaged.len(),
                    amber_engine::ops::display_path(&d.path)
                );
            }
            Ok(format!("{} files into {}", r.files, dest.display()))
        }
        PartKind::Volume => {
            let out = PathBuf::from(format!("{}.img", mounted_at(into, "volumes", &part.mount).display()));
            if let Some(parent) = out.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let opts = BlockRestoreOptions {
                seed: None,
                threads: g.threads,
                progress: None,
            };
            let r = restore_block(repo, part.snapshot, &out, &opts)?;
            if r.lost_bytes > 0 {
                bail!(
                    "restored in part into {}: {} bytes of a volume marked damaged by a repair are lost, left as zeros",
                    out.display(),
                    r.lost_bytes
                );
            }
            Ok(format!("{} bytes into {}", r.size, out.display()))
        }
    }
}

/// `envs`: every environment snapshot (of --env when given) with its parts.
pub fn list(g: &Global) -> Result<ExitCode> {
    let repo = context::open_read(g)?;
    let mut out = Vec::new();
    for (id, snap) in repo.snapshots()? {
        if snap.source != SourceKind::Environment || g.env.as_deref().is_some_and(|e| e != snap.environment) {
            continue;
        }
        out.push(env_info_json(&id, &snap, &parts_of(&repo, id, &snap)?));
    }
    print_envs(g, out);
    Ok(ExitCode::SUCCESS)
}

/// The record's fields: time, lab, researcher, metadata.
fn put_record(obj: &mut serde_json::Map<String, Value>, snap: &Snapshot) {
    put_time(obj, "time", snap.time_ns);
    obj.insert("lab".into(), json!(snap.lab));
    obj.insert("researcher".into(), json!(snap.researcher));
    let metadata: std::collections::BTreeMap<_, _> = snap.metadata.iter().cloned().collect();
    obj.insert("metadata".into(), json!(metadata));
}

/// One `env-info` document.
pub fn env_info_json(id: &SnapshotId, snap: &Snapshot, parts: &[Part]) -> Value {
    let parts: Vec<Value> = parts
        .iter()
        .map(|p| json!({"kind": p.kind.name(), "mount": (!p.mount.is_empty()).then_some(p.mount.as_str()), "snapshot": p.snapshot.to_hex()}))
        .collect();
    let mut obj = serde_json::Map::new();
    obj.insert("id".into(), json!(id.to_hex()));
    obj.insert("environment".into(), json!(snap.environment));
    put_record(&mut obj, snap);
    obj.insert("parts".into(), Value::Array(parts));
    Value::Object(obj)
}

/// Prints the array of `env-info` documents.
pub fn print_envs(g: &Global, envs: Vec<Value>) {
    let value = Value::Array(envs);
    emit(g.json, &value, || {
        value
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                let parts: Vec<String> = e["parts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| {
                        format!(
                            "{} {}",
                            p["kind"].as_str().unwrap_or_default(),
                            p["mount"].as_str().unwrap_or("")
                        )
                    })
                    .collect();
                format!(
                    "{} {} {}  {}",
                    e["id"].as_str().unwrap_or_default().get(..8).unwrap_or_default(),
                    e["time"].as_str().unwrap_or_default(),
                    e["environment"].as_str().unwrap_or_default(),
                    parts.join(", ")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
}
