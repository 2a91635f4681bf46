//! `find`: files whose name (or path) matches a glob, across snapshots, locally and
//! through a server (`ListEntries`, recursive, matched on the client).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::ExitCode;

use amber_engine::format::snapshot::{Snapshot, SourceKind};
use amber_engine::format::tree::Entry;
use amber_engine::id::{SnapshotId, TreeId};
use amber_engine::ops::display_path;
use amber_engine::ops::members::for_each_member;
use amber_engine::ops::walk::walk;
use amber_engine::repo::Repository;
use amber_proto::v1 as pb;
use anyhow::Result;
use globset::{GlobBuilder, GlobMatcher};
use serde_json::Value;

use crate::cli::Global;
use crate::client::{Remote, block_on, failed};
use crate::commands::inspect::{entry_json, mtime_ns};
use crate::context;
use crate::output::{emit, failure, time_text};
use amber_server::serve::convert;

/// A `find` pattern: matched against names, or against paths when it contains `/` (the
/// rules of `--exclude`).
struct Pattern {
    glob: GlobMatcher,
    on_path: bool,
}

impl Pattern {
    fn new(text: &str) -> Result<Pattern> {
        let trimmed = text.trim_end_matches('/');
        let on_path = trimmed.contains('/');
        let glob = GlobBuilder::new(trimmed.trim_start_matches('/'))
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|e| failure("invalid_argument", format!("bad pattern {text:?}: {e}")))?;
        Ok(Pattern {
            glob: glob.compile_matcher(),
            on_path,
        })
    }

    fn matches(&self, path: &[u8]) -> bool {
        let subject = if self.on_path {
            path
        } else {
            path.rsplit(|&b| b == b'/').next().unwrap_or_default()
        };
        self.glob.is_match(Path::new(OsStr::from_bytes(subject)))
    }
}

/// One match: the snapshot, the path and its entry.
type Found = (SnapshotId, Vec<u8>, Entry);

/// `amber find` on the local repository.
///
/// # Errors
/// A bad pattern, an unknown snapshot, store errors.
pub fn local(g: &Global, pattern: &str, names: &[String]) -> Result<ExitCode> {
    let pattern = Pattern::new(pattern)?;
    let repo = context::open_read(g)?;
    let snaps = if names.is_empty() {
        let all = repo.snapshots()?;
        all.into_iter()
            .filter(|(_, s)| g.env.as_ref().is_none_or(|e| &s.environment == e))
            .collect()
    } else {
        names
            .iter()
            .map(|n| repo.resolve_snapshot(n, g.env.as_deref()))
            .collect::<amber_engine::error::Result<Vec<_>>>()?
    };
    let mut found = Vec::new();
    for (id, snap) in &snaps {
        search(&repo, *id, snap, &pattern, &mut found)?;
    }
    print_found(g, &found)
}

fn search(repo: &Repository, id: SnapshotId, snap: &Snapshot, pattern: &Pattern, found: &mut Vec<Found>) -> Result<()> {
    let mut keep = |path: &[u8], e: &Entry| {
        if pattern.matches(path) {
            found.push((id, path.to_vec(), e.clone()));
        }
        Ok(())
    };
    match snap.source {
        SourceKind::TarLayer => for_each_member(repo, id, &mut keep)?,
        SourceKind::Tree | SourceKind::BlockVolume => walk(repo, TreeId::new(snap.root), b"", &mut keep)?,
        // Its parts are snapshots of their own, searched as such.
        SourceKind::Environment => {}
        SourceKind::Image => {
            for (path, e) in amber_engine::ops::image::view::listing(repo, id, snap)? {
                keep(&path, &e)?;
            }
        }
    }
    Ok(())
}

/// `amber find --server`: the vault's snapshots (or the ones named), each listed in full
/// with `ListEntries` and matched here.
///
/// # Errors
/// A bad pattern; connection and server errors.
pub fn remote(g: &Global, pattern: &str, names: &[String]) -> Result<ExitCode> {
    let pattern = Pattern::new(pattern)?;
    let found = block_on(async {
        let remote = Remote::connect(g).await?;
        let ids = remote_ids(&remote, g, names).await?;
        let mut found = Vec::new();
        for id in ids {
            list_matching(&remote, id, &pattern, &mut found).await?;
        }
        Ok(found)
    })?;
    print_found(g, &found)
}

/// The snapshots to search: those named, else every one (of `--env`), oldest first.
async fn remote_ids(remote: &Remote, g: &Global, names: &[String]) -> Result<Vec<SnapshotId>> {
    let mut ids = Vec::new();
    if names.is_empty() {
        for s in crate::client::catalog::list_snapshots(remote, g.env.as_deref()).await? {
            ids.push(parse_id(&s.id)?);
        }
    } else {
        for name in names {
            let info = crate::client::pull_tar::get_snapshot(remote, name, g.env.as_deref()).await?;
            ids.push(parse_id(&info.id)?);
        }
    }
    Ok(ids)
}

fn parse_id(hex: &str) -> Result<SnapshotId> {
    SnapshotId::from_hex(hex).map_err(|_| failure("internal", format!("the server sent a malformed id {hex:?}")))
}

async fn list_matching(remote: &Remote, id: SnapshotId, pattern: &Pattern, found: &mut Vec<Found>) -> Result<()> {
    let req = pb::ListEntriesRequest {
        vault: remote.vault.clone(),
        snapshot: id.to_hex(),
        path: Vec::new(),
        recursive: true,
        environment: String::new(),
    };
    let mut stream = remote
        .catalog()
        .list_entries(remote.request(req))
        .await
        .map_err(|s| failed("cannot list entries", &s))?
        .into_inner();
    while let Some(batch) = stream.message().await.map_err(|s| failed("listing failed", &s))? {
        for e in batch.entries.into_iter().filter(|e| pattern.matches(&e.path)) {
            let name = e.path.rsplit(|&b| b == b'/').next().unwrap_or_default().to_vec();
            let entry = convert::entry(name, e.meta.as_ref()).map_err(|s| failed("bad entry", &s))?;
            found.push((id, e.path, entry));
        }
    }
    Ok(())
}

/// Prints the `find` document (an array of entries with their snapshot) or one line per
/// match.
fn print_found(g: &Global, found: &[Found]) -> Result<ExitCode> {
    let value: Value = found
        .iter()
        .map(|(id, path, e)| {
            let mut v = entry_json(path, e);
            if let Value::Object(obj) = &mut v {
                obj.insert("snapshot".into(), Value::String(id.to_hex()));
            }
            v
        })
        .collect();
    emit(g.json, &value, || {
        let mut lines: Vec<String> = found
            .iter()
            .map(|(id, path, e)| {
                format!(
                    "{} {}{:04o} {:>12} {} /{}",
                    id.short(),
                    e.kind.letter(),
                    e.mode,
                    e.size,
                    time_text(mtime_ns(e)),
                    display_path(path)
                )
            })
            .collect();
        lines.push(format!("{} matches", found.len()));
        lines.join("\n")
    });
    Ok(ExitCode::SUCCESS)
}
