//! `snapshot`.

use std::process::ExitCode;

use amber_engine::ops::Labels;
use amber_engine::ops::block::{BlockOptions, snapshot_block};
use amber_engine::ops::exclude::Excludes;
use amber_engine::ops::ingest::{ParentChoice, TreeOptions, snapshot_paths};
use amber_engine::ops::ranges::{NOTHING_CHANGED, load_ranges};
use amber_engine::ops::tar::{TarOptions, snapshot_tar};
use amber_engine::repo::Repository;
use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::cli::{Global, SnapshotArgs};
use crate::commands::EXIT_INCOMPLETE;
use crate::context;
use crate::output::{ProgressDisplay, bytes, emit};

fn labels(g: &Global, args: &SnapshotArgs) -> Labels {
    Labels {
        environment: g.env.clone().unwrap_or_default(),
        lab: args.lab.clone(),
        researcher: args.researcher.clone(),
        tags: args.tags.clone(),
        metadata: args.metadata.clone(),
        hostname: None,
    }
}

pub fn run(g: &Global, args: &SnapshotArgs) -> Result<ExitCode> {
    let repo = context::open(g)?;
    if let Some(image) = &args.block {
        return block(g, &repo, image, args);
    }
    if let Some(layer) = &args.tar {
        return tar(g, &repo, layer, args);
    }
    if args.paths.is_empty() {
        bail!("give a directory, --tar FILE or --block FILE")
    }
    let parent = match (&args.parent, args.force) {
        (_, true) => ParentChoice::None,
        (Some(name), _) => ParentChoice::Given(repo.resolve_snapshot(name, g.env.as_deref())?.0),
        (None, false) => ParentChoice::Auto,
    };
    let display = ProgressDisplay::start("snapshot");
    let opts = TreeOptions {
        labels: labels(g, args),
        parent,
        threads: g.threads,
        progress: Some(display.counters()),
        exclude: excludes(args)?,
    };
    let started = std::time::Instant::now();
    let result = snapshot_paths(&repo, &args.paths, &opts);
    display.finish();
    let s = result?;
    for (path, why) in &s.skipped {
        eprintln!("warning: skipped {path}: {why}");
    }
    let st = &s.snapshot.stats;
    let value = json!({
        "id": s.id.to_hex(),
        "parent": s.parent.map(|p| p.to_hex()),
        "files": st.files,
        "dirs": st.dirs,
        "bytes": st.bytes,
        "files_unchanged": s.files_unchanged,
        "bytes_read": s.bytes_read,
        "bytes_new": s.written.bytes_new,
        "raw_bytes_new": s.written.raw_new,
        "blobs_new": s.written.blobs_new,
        "packs_written": s.written.packs,
        "complete": s.snapshot.is_complete(),
        "skipped": s.skipped.iter().map(|(p, why)| json!({ "path": p, "error": why })).collect::<Vec<_>>(),
        "duration_secs": started.elapsed().as_secs_f64(),
    });
    emit(g.json, &value, || {
        format!(
            "files: {} ({} unchanged), dirs: {}, {} read\nadded to the repository: {} ({} stored)\nsnapshot {} saved{}",
            st.files,
            s.files_unchanged,
            st.dirs,
            bytes(s.bytes_read),
            bytes(s.written.raw_new),
            bytes(s.written.bytes_new),
            s.id,
            if s.snapshot.is_complete() {
                ""
            } else {
                " (incomplete: some paths could not be read)"
            }
        )
    });
    Ok(if s.snapshot.is_complete() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_INCOMPLETE)
    })
}

/// The exclusion patterns of `--exclude` and `--exclude-file`.
pub fn excludes(args: &SnapshotArgs) -> Result<Excludes> {
    let mut patterns = args.exclude.clone();
    for f in &args.exclude_file {
        let text = std::fs::read_to_string(f).with_context(|| format!("cannot read exclude file {}", f.display()))?;
        patterns.extend(Excludes::parse_file(&text));
    }
    Ok(Excludes::new(&patterns)?)
}

fn block(g: &Global, repo: &Repository, image: &std::path::Path, args: &SnapshotArgs) -> Result<ExitCode> {
    let parent = match &args.parent {
        Some(name) => Some(repo.resolve_snapshot(name, g.env.as_deref())?.0),
        None => None,
    };
    let changed_ranges = match &args.changed_ranges {
        Some(f) => Some(load_ranges(f)?),
        None => None,
    };
    if changed_ranges.as_ref().is_some_and(Vec::is_empty) {
        eprintln!("amber: {NOTHING_CHANGED}");
    }
    let display = ProgressDisplay::start("snapshot");
    let opts = BlockOptions {
        labels: labels(g, args),
        parent,
        changed_ranges,
        threads: g.threads,
        progress: Some(display.counters()),
    };
    let started = std::time::Instant::now();
    let result = snapshot_block(repo, image, &opts);
    display.finish();
    let s = result?;
    let value = json!({
        "id": s.id.to_hex(),
        "kind": "block",
        "parent": s.snapshot.parent.map(|p| p.to_hex()),
        "size": s.size,
        "block_size": repo.config().block_size,
        "blocks": s.blocks,
        "holes": s.holes,
        "blocks_inherited": s.inherited,
        "bytes_read": s.bytes_read,
        "bytes_new": s.written.bytes_new,
        "raw_bytes_new": s.written.raw_new,
        "blobs_new": s.written.blobs_new,
        "duration_secs": started.elapsed().as_secs_f64(),
    });
    emit(g.json, &value, || {
        format!(
            "volume: {}, {} blocks ({} holes, {} inherited), {} read\nadded to the repository: {} ({} stored)\nsnapshot {} saved",
            bytes(s.size),
            s.blocks,
            s.holes,
            s.inherited,
            bytes(s.bytes_read),
            bytes(s.written.raw_new),
            bytes(s.written.bytes_new),
            s.id
        )
    });
    Ok(ExitCode::SUCCESS)
}

fn tar(g: &Global, repo: &Repository, layer: &std::path::Path, args: &SnapshotArgs) -> Result<ExitCode> {
    let display = ProgressDisplay::start("snapshot");
    let opts = TarOptions {
        labels: labels(g, args),
        progress: Some(display.counters()),
        confine_paths: false,
    };
    let started = std::time::Instant::now();
    let result = if layer.as_os_str() == "-" {
        snapshot_tar(repo, &mut std::io::stdin().lock(), "-", &opts)
    } else {
        let mut file = std::fs::File::open(layer).with_context(|| format!("cannot open {}", layer.display()))?;
        snapshot_tar(repo, &mut file, &layer.to_string_lossy(), &opts)
    };
    display.finish();
    let s = result?;
    let value = json!({
        "id": s.id.to_hex(),
        "kind": "tar",
        "already_stored": s.already_stored,
        "members": s.members,
        "size": s.size,
        "input_size": s.input_size,
        "diff_id": s.diff_id,
        "digest": s.digest,
        "compression": s.compression,
        "bytes_new": s.written.bytes_new,
        "raw_bytes_new": s.written.raw_new,
        "blobs_new": s.written.blobs_new,
        "duration_secs": started.elapsed().as_secs_f64(),
    });
    emit(g.json, &value, || {
        format!(
            "layer: {} members, {} ({} compression), diff id {}\nadded to the repository: {} ({} stored)\n{} {}",
            s.members,
            bytes(s.size),
            s.compression,
            s.diff_id,
            bytes(s.written.raw_new),
            bytes(s.written.bytes_new),
            if s.already_stored {
                "already stored as snapshot"
            } else {
                "snapshot"
            },
            s.id
        )
    });
    Ok(ExitCode::SUCCESS)
}
