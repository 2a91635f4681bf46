//! `snapshots`, `ls`, `diff`.

use std::process::ExitCode;

use amber_engine::format::snapshot::{Snapshot, SourceKind};
use amber_engine::format::tree::Entry;
use amber_engine::id::{SnapshotId, TreeId};
use amber_engine::ops::diff::{Change, diff_trees};
use amber_engine::ops::walk::{find_dir, walk};
use anyhow::{Result, bail};
use amber_engine::ops::{display_path, trim_slashes};
use serde_json::{Map, Value, json};

use crate::cli::Global;
use crate::context;
use crate::output::{bytes, emit, put_path};

fn time_text(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn snapshot_json(id: &SnapshotId, s: &Snapshot) -> Value {
    json!({
        "id": id.to_hex(),
        "time": time_text(s.time_ns),
        "time_ns": s.time_ns,
        "kind": s.source.name(),
        "environment": s.environment,
        "lab": s.lab,
        "researcher": s.researcher,
        "hostname": s.hostname,
        "path": s.source_path,
        "parent": s.parent.map(|p| p.to_hex()),
        "root": s.root.to_hex(),
        "tags": s.tags,
        "metadata": s.metadata.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "files": s.stats.files,
        "dirs": s.stats.dirs,
        "bytes": s.stats.bytes,
        "bytes_new": s.stats.bytes_new,
        "complete": s.is_complete(),
        "skipped": s.skipped,
        "diff_id": amber_engine::ops::tar::recorded_diff_id(s),
        "digest": s.metadata.iter().find(|(k, _)| k == amber_engine::ops::tar::DIGEST_KEY).map(|(_, v)| v),
    })
}

pub fn snapshots(g: &Global) -> Result<ExitCode> {
    let repo = context::open(g)?;
    print_snapshots(g, repo.snapshots()?)
}

/// Prints snapshots (of `--env` only, when given) as a table or JSON.
pub fn print_snapshots(g: &Global, all: Vec<(SnapshotId, Snapshot)>) -> Result<ExitCode> {
    let all: Vec<_> = all
        .into_iter()
        .filter(|(_, s)| g.env.as_ref().is_none_or(|e| &s.environment == e))
        .collect();
    let value = json!(all.iter().map(|(id, s)| snapshot_json(id, s)).collect::<Vec<_>>());
    emit(g.json, &value, || {
        let mut lines = vec![format!(
            "{:<10} {:<19} {:<20} {:<12} {:>10}  {}",
            "ID", "TIME", "ENV", "HOST", "SIZE", "PATH"
        )];
        for (id, s) in &all {
            lines.push(format!(
                "{:<10} {:<19} {:<20} {:<12} {:>10}  {}{}{}",
                id.short(),
                time_text(s.time_ns),
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
    });
    Ok(ExitCode::SUCCESS)
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

fn entry_json(path: &[u8], e: &Entry) -> Value {
    let mut obj = Map::new();
    put_path(&mut obj, "path", path);
    let rest = json!({
        "type": e.kind.letter().to_string(),
        "mode": format!("{:o}", e.mode),
        "uid": e.uid,
        "gid": e.gid,
        "size": e.size,
        "mtime": e.mtime.sec,
        "mtime_nsec": e.mtime.nsec,
    });
    if let Value::Object(fields) = rest {
        obj.extend(fields);
    }
    if !e.link_target.is_empty() {
        put_path(&mut obj, "link_target", &e.link_target);
    }
    Value::Object(obj)
}

pub fn ls(g: &Global, name: &str, subpath: Option<&[u8]>) -> Result<ExitCode> {
    let repo = context::open(g)?;
    let (id, snap) = repo.resolve_snapshot(name, g.env.as_deref())?;
    let sub = trim_slashes(subpath.unwrap_or_default());
    let dir = find_dir(&repo, tree_root(&id, &snap)?, sub)?;
    let mut items = Vec::new();
    walk(&repo, dir, sub, &mut |path, e| {
        items.push((path.to_vec(), e.clone()));
        Ok(())
    })?;
    print_entries(g, &items)
}

/// Prints entries as `ls -l`-like lines or JSON.
pub fn print_entries(g: &Global, items: &[(Vec<u8>, Entry)]) -> Result<ExitCode> {
    let value = json!(items.iter().map(|(p, e)| entry_json(p, e)).collect::<Vec<_>>());
    emit(g.json, &value, || {
        items
            .iter()
            .map(|(p, e)| {
                format!(
                    "{}{:04o} {:>12} {} /{}",
                    e.kind.letter(),
                    e.mode,
                    e.size,
                    time_text(e.mtime.sec * 1_000_000_000),
                    display_path(p)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok(ExitCode::SUCCESS)
}

pub fn diff(g: &Global, a: &str, b: &str) -> Result<ExitCode> {
    let repo = context::open(g)?;
    let (ida, sa) = repo.resolve_snapshot(a, g.env.as_deref())?;
    let (idb, sb) = repo.resolve_snapshot(b, g.env.as_deref())?;
    let changes = diff_trees(&repo, tree_root(&ida, &sa)?, tree_root(&idb, &sb)?)?;
    print_diff(g, &ida, &idb, &changes)
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
    let count = |k| changes.iter().filter(|c| c.kind == k).count();
    use amber_engine::ops::diff::ChangeKind as K;
    let value = json!({
        "from": ida.to_hex(),
        "to": idb.to_hex(),
        "changes": changes.iter().map(change_json).collect::<Vec<_>>(),
        "added": count(K::Added),
        "removed": count(K::Removed),
        "modified": count(K::Modified),
        "metadata": count(K::Metadata),
        "type_changed": count(K::TypeChanged),
    });
    emit(g.json, &value, || {
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
    });
    Ok(ExitCode::SUCCESS)
}
