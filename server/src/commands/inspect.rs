//! `snapshots`, `ls`, `diff`.

use std::process::ExitCode;

use amber_engine::format::snapshot::{Snapshot, SourceKind};
use amber_engine::format::tree::Entry;
use amber_engine::id::{SnapshotId, TreeId};
use amber_engine::ops::diff::{Change, diff_trees};
use amber_engine::ops::image::view as image_view;
use amber_engine::ops::members::for_each_member_below;
use amber_engine::ops::walk::{find_dir, walk};
use amber_engine::ops::{display_path, trim_slashes};
use amber_engine::repo::Repository;
use anyhow::{Context, Result, bail};
use serde_json::{Map, Value, json};

use crate::cli::Global;
use crate::context;
use crate::output::{bytes, emit, put_path, put_time, time_text};

/// A snapshot as the `snapshots` document lists it (`docs/json.md`).
fn snapshot_json(id: &SnapshotId, s: &Snapshot) -> Value {
    let mut obj = Map::new();
    obj.insert("id".into(), json!(id.to_hex()));
    obj.insert("kind".into(), json!(s.source.name()));
    put_time(&mut obj, "time", s.time_ns);
    let rest = json!({
        "environment": s.environment,
        "lab": s.lab,
        "researcher": s.researcher,
        "hostname": s.hostname,
        "path": s.source_path,
        "parent": s.parent.map(|p| p.to_hex()),
        "tags": s.tags,
        "metadata": s.metadata.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<Map<_, _>>(),
        "files": s.stats.files,
        "dirs": s.stats.dirs,
        "bytes": s.stats.bytes,
        "bytes_new": s.stats.bytes_new,
        "blobs_new": s.stats.blobs_new,
        "complete": s.is_complete(),
        "skipped": s.skipped,
        "diff_id": amber_engine::ops::tar::recorded_diff_id(s),
        "digest": s.metadata.iter().find(|(k, _)| k == amber_engine::ops::tar::DIGEST_KEY).map(|(_, v)| v),
    });
    extend(&mut obj, rest);
    Value::Object(obj)
}

/// Adds the fields of `more` (an object) to `obj`.
pub fn extend(obj: &mut Map<String, Value>, more: Value) {
    if let Value::Object(fields) = more {
        obj.extend(fields);
    }
}

/// `amber snapshots`: a snapshot object that does not open is named on stderr and left
/// out, the others are listed, and the exit status is 3.
pub fn snapshots(g: &Global) -> Result<ExitCode> {
    let repo = context::open_read(g)?;
    let list = repo.snapshot_list()?;
    for (id, why) in &list.damaged {
        eprintln!("amber: snapshot {id} cannot be read: {why}");
    }
    print_snapshots(g, list.snapshots)?;
    Ok(if list.damaged.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::commands::EXIT_INCOMPLETE)
    })
}

/// Prints snapshots (of `--env` only, when given) as a table or JSON.
pub fn print_snapshots(g: &Global, all: Vec<(SnapshotId, Snapshot)>) -> Result<ExitCode> {
    let all: Vec<_> = all
        .into_iter()
        .filter(|(_, s)| g.env.as_ref().is_none_or(|e| &s.environment == e))
        .collect();
    let value = json!(all.iter().map(|(id, s)| snapshot_json(id, s)).collect::<Vec<_>>());
    emit(g.json, &value, || snapshot_table(&all));
    Ok(ExitCode::SUCCESS)
}

fn snapshot_table(all: &[(SnapshotId, Snapshot)]) -> String {
    let mut lines = vec![format!(
        "{:<10} {:<26} {:<5} {:<20} {:<12} {:>10}  {}",
        "ID", "TIME", "KIND", "ENV", "HOST", "SIZE", "PATH"
    )];
    for (id, s) in all {
        lines.push(format!(
            "{:<10} {:<26} {:<5} {:<20} {:<12} {:>10}  {}{}{}",
            id.short(),
            time_text(s.time_ns),
            s.source.name(),
            s.environment,
            s.hostname,
            bytes(s.stats.bytes),
            s.source_path,
            if s.tags.is_empty() {
                String::new()
            } else {
                format!(" [{}]", s.tags.join(","))
            },
            if s.is_complete() { "" } else { " (incomplete)" }
        ));
    }
    lines.push(format!("{} snapshots", all.len()));
    lines.join("\n")
}

fn tree_root(id: &SnapshotId, s: &Snapshot) -> Result<TreeId> {
    // Volume snapshots are rooted in a one-entry tree too.
    if !matches!(s.source, SourceKind::Tree | SourceKind::BlockVolume) {
        bail!(
            "snapshot {id} is a {} snapshot, which has no file tree",
            s.source.name()
        );
    }
    Ok(TreeId::new(s.root))
}

/// One entry of the `ls` and `find` documents.
pub fn entry_json(path: &[u8], e: &Entry) -> Value {
    let mut obj = Map::new();
    put_path(&mut obj, "path", path);
    let rest = json!({
        "type": e.kind.letter().to_string(),
        "mode": format!("{:o}", e.mode),
        "uid": e.uid,
        "gid": e.gid,
        "size": e.size,
    });
    extend(&mut obj, rest);
    put_time(&mut obj, "mtime", mtime_ns(e));
    if !e.link_target.is_empty() {
        put_path(&mut obj, "link_target", &e.link_target);
    }
    Value::Object(obj)
}

/// An entry's mtime in nanoseconds since the epoch (saturating far outside 1678..2262).
pub fn mtime_ns(e: &Entry) -> i64 {
    e.mtime
        .sec
        .saturating_mul(1_000_000_000)
        .saturating_add(i64::from(e.mtime.nsec))
}

/// `amber ls`: the entries below PATH of a tree or volume snapshot, or the members of a
/// layer snapshot.
pub fn ls(g: &Global, name: &str, subpath: Option<&[u8]>) -> Result<ExitCode> {
    let repo = context::open_read(g)?;
    let (id, snap) = repo.resolve_snapshot(name, g.env.as_deref())?;
    let sub = trim_slashes(subpath.unwrap_or_default());
    let mut items = Vec::new();
    let mut keep = |path: &[u8], e: &Entry| {
        items.push((path.to_vec(), e.clone()));
        Ok(())
    };
    if snap.source == SourceKind::TarLayer {
        for_each_member_below(&repo, id, sub, true, &mut keep)?;
    } else if snap.source == SourceKind::Image {
        let below =
            |p: &[u8]| sub.is_empty() || p == sub || p.strip_prefix(sub).is_some_and(|r| r.first() == Some(&b'/'));
        for (path, e) in image_view::listing(&repo, id, &snap)? {
            if below(&path) {
                keep(&path, &e)?;
            }
        }
    } else {
        walk(&repo, find_dir(&repo, tree_root(&id, &snap)?, sub)?, sub, &mut keep)?;
    }
    print_entries(g, &items)
}

/// Prints entries as `ls -l`-like lines or JSON.
pub fn print_entries(g: &Global, items: &[(Vec<u8>, Entry)]) -> Result<ExitCode> {
    let value = json!(items.iter().map(|(p, e)| entry_json(p, e)).collect::<Vec<_>>());
    emit(g.json, &value, || {
        items
            .iter()
            .map(|(p, e)| {
                let link = if e.link_target.is_empty() {
                    String::new()
                } else {
                    format!(" -> {}", display_path(&e.link_target))
                };
                format!(
                    "{}{:04o} {:>12} {} /{}{link}",
                    e.kind.letter(),
                    e.mode,
                    e.size,
                    time_text(mtime_ns(e)),
                    display_path(p)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok(ExitCode::SUCCESS)
}

pub fn diff(g: &Global, a: &str, b: &str) -> Result<ExitCode> {
    let repo = context::open_read(g)?;
    let (ida, sa) = repo.resolve_snapshot(a, g.env.as_deref())?;
    let (idb, sb) = repo.resolve_snapshot(b, g.env.as_deref())?;
    if sa.source == SourceKind::Image && sb.source == SourceKind::Image {
        return diff_images(g, &repo, (&ida, &sa), (&idb, &sb));
    }
    let changes = diff_trees(&repo, tree_root(&ida, &sa)?, tree_root(&idb, &sb)?)?;
    print_diff(g, &ida, &idb, &changes)
}

/// Two images: their layers position by position, and their flattened file systems (the
/// first image of each, whiteouts applied).
fn diff_images(
    g: &Global,
    repo: &Repository,
    a: (&SnapshotId, &Snapshot),
    b: (&SnapshotId, &Snapshot),
) -> Result<ExitCode> {
    let first = |(id, snap): (&SnapshotId, &Snapshot)| -> Result<image_view::ManifestView> {
        image_view::manifests(repo, *id, snap)?
            .into_iter()
            .next()
            .with_context(|| format!("image {id} holds no image manifest"))
    };
    let (ma, mb) = (first(a)?, first(b)?);
    let layers = layer_changes(&ma, &mb);
    let changes = image_view::diff_flattened(&image_view::flattened(repo, &ma)?, &image_view::flattened(repo, &mb)?);
    let mut value = diff_json(a.0, b.0, &changes);
    if let Value::Object(obj) = &mut value {
        obj.insert(
            "layers".into(),
            Value::Array(layers.iter().map(|(_, v)| v.clone()).collect()),
        );
    }
    emit(g.json, &value, || {
        let mut lines: Vec<String> = layers.iter().map(|(line, _)| line.clone()).collect();
        lines.push(diff_text(&changes));
        lines.join("\n")
    });
    Ok(ExitCode::SUCCESS)
}

/// Position by position: `same`, `changed`, `added` or `removed`, as a text line and JSON.
fn layer_changes(a: &image_view::ManifestView, b: &image_view::ManifestView) -> Vec<(String, Value)> {
    let n = a.layers.len().max(b.layers.len());
    (0..n)
        .map(|i| {
            let (x, y) = (a.layers.get(i).map(|l| &l.1), b.layers.get(i).map(|l| &l.1));
            let change = match (x, y) {
                (Some(x), Some(y)) if x.diff_id == y.diff_id => "same",
                (Some(_), Some(_)) => "changed",
                (None, _) => "added",
                (_, None) => "removed",
            };
            let diff_id = |l: Option<&amber_engine::ops::tar::LayerRef>| l.map(|l| l.diff_id.clone());
            let line = format!(
                "layer {i}: {change} ({} -> {})",
                diff_id(x).unwrap_or_else(|| "none".into()),
                diff_id(y).unwrap_or_else(|| "none".into())
            );
            (
                line,
                json!({"index": i, "change": change, "from": diff_id(x), "to": diff_id(y)}),
            )
        })
        .collect()
}

fn change_json(c: &Change) -> Value {
    let mut obj = Map::new();
    put_path(&mut obj, "path", &c.path);
    obj.insert("change".into(), json!(c.kind.name()));
    obj.insert("type".into(), json!(c.entry_kind.letter().to_string()));
    obj.insert("size_before".into(), json!(c.size_before));
    obj.insert("size_after".into(), json!(c.size_after));
    Value::Object(obj)
}

/// Prints changes as restic-style lines or JSON.
pub fn print_diff(g: &Global, ida: &SnapshotId, idb: &SnapshotId, changes: &[Change]) -> Result<ExitCode> {
    emit(g.json, &diff_json(ida, idb, changes), || diff_text(changes));
    Ok(ExitCode::SUCCESS)
}

fn diff_json(ida: &SnapshotId, idb: &SnapshotId, changes: &[Change]) -> Value {
    let count = |k| changes.iter().filter(|c| c.kind == k).count();
    use amber_engine::ops::diff::ChangeKind as K;
    json!({
        "from": ida.to_hex(),
        "to": idb.to_hex(),
        "changes": changes.iter().map(change_json).collect::<Vec<_>>(),
        "added": count(K::Added),
        "removed": count(K::Removed),
        "modified": count(K::Modified),
        "metadata": count(K::Metadata),
        "type_changed": count(K::TypeChanged),
    })
}

fn diff_text(changes: &[Change]) -> String {
    let count = |k| changes.iter().filter(|c| c.kind == k).count();
    use amber_engine::ops::diff::ChangeKind as K;
    let mut lines: Vec<String> = changes
        .iter()
        .map(|c| format!("{}    /{}", c.kind.letter(), display_path(&c.path)))
        .collect();
    lines.push(format!(
        "{} added, {} removed, {} modified, {} metadata only, {} type changed",
        count(K::Added),
        count(K::Removed),
        count(K::Modified),
        count(K::Metadata),
        count(K::TypeChanged)
    ));
    lines.join("\n")
}
