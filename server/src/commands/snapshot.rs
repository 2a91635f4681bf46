//! `snapshot`.

use std::process::ExitCode;

use amber_engine::format::snapshot::Snapshot;
use amber_engine::ops::Labels;
use amber_engine::ops::block::{BlockOptions, snapshot_block};
use amber_engine::ops::exclude::Excludes;
use amber_engine::ops::image::{ImageLayer, ImageOptions, ImageSummary, snapshot_image};
use amber_engine::ops::ingest::{ParentChoice, TreeOptions, snapshot_paths};
use amber_engine::ops::ranges::{NOTHING_CHANGED, load_ranges};
use amber_engine::ops::tar::{TarOptions, snapshot_tar};
use amber_engine::repo::Repository;
use amber_engine::repo::writer::WriteStats;
use anyhow::{Context, Result, bail};
use serde_json::{Map, Value, json};

use crate::cli::{Global, SnapshotArgs};
use crate::commands::EXIT_INCOMPLETE;
use crate::commands::inspect::extend;
use crate::context;
use crate::output::{ProgressDisplay, bytes, emit, put_path, put_time};

/// The fields every "snapshot" document has, from `amber snapshot` and `amber push` alike
/// (`docs/json.md`).
pub struct Created {
    /// The snapshot's id (an existing one when `already_stored`).
    pub id: String,
    /// A layer the vault already held: nothing was committed.
    pub already_stored: bool,
    /// Regular files (layer: members; volume: 1).
    pub files: u64,
    /// Directories.
    pub dirs: u64,
    /// Content bytes.
    pub bytes: u64,
    /// Bytes read from the source.
    pub bytes_read: u64,
    /// Bytes the store grew by (compressed and sealed).
    pub bytes_new: u64,
    /// Blobs the store grew by.
    pub blobs_new: u64,
    /// Paths that could not be read.
    pub skipped: u64,
    /// Wall time of the command.
    pub duration_seconds: f64,
}

impl Created {
    /// The document's common fields.
    pub fn json(&self) -> Value {
        json!({
            "id": self.id,
            "already_stored": self.already_stored,
            "complete": self.skipped == 0,
            "files": self.files,
            "dirs": self.dirs,
            "bytes": self.bytes,
            "bytes_read": self.bytes_read,
            "bytes_new": self.bytes_new,
            "blobs_new": self.blobs_new,
            "skipped": self.skipped,
            "duration_seconds": self.duration_seconds,
        })
    }
}

/// Adds the fields of object `more` to object `value`.
pub fn extend_value(value: &mut Value, more: Value) {
    if let Value::Object(obj) = value {
        extend(obj, more);
    }
}

/// The fields only a local snapshot knows: kind, parent, time, plaintext bytes added and
/// the skipped paths with their reasons.
fn local_fields(value: &mut Value, snap: &Snapshot, written: &WriteStats, skipped: &[(String, String)]) {
    let Value::Object(obj) = value else { return };
    obj.insert("kind".into(), json!(snap.source.name()));
    obj.insert("parent".into(), json!(snap.parent.map(|p| p.to_hex())));
    put_time(obj, "time", snap.time_ns);
    obj.insert("raw_bytes_new".into(), json!(written.raw_new));
    let paths = skipped
        .iter()
        .map(|(path, why)| {
            let mut e = Map::new();
            put_path(&mut e, "path", path.as_bytes());
            e.insert("error".into(), json!(why));
            Value::Object(e)
        })
        .collect();
    obj.insert("skipped_paths".into(), Value::Array(paths));
}

fn labels(g: &Global, args: &SnapshotArgs) -> Labels {
    Labels {
        environment: g.env.clone().unwrap_or_default(),
        lab: args.lab.clone(),
        researcher: args.researcher.clone(),
        tags: args.tags.clone(),
        metadata: args.metadata.clone(),
        hostname: None,
        time_ns: test_time_ns(),
    }
}

/// The snapshot time `AMBER_TEST_NOW` (seconds since the epoch) sets, for tests of
/// retention and tiering that need snapshots of other days; `None`: now.
fn test_time_ns() -> Option<i64> {
    let secs: i64 = std::env::var("AMBER_TEST_NOW").ok()?.parse().ok()?;
    secs.checked_mul(1_000_000_000)
}

pub fn run(g: &Global, args: &SnapshotArgs) -> Result<ExitCode> {
    let repo = context::open(g)?;
    if let Some(image) = &args.block {
        return block(g, &repo, image, args);
    }
    if let Some(layer) = &args.tar {
        return tar(g, &repo, layer, args);
    }
    if let Some(path) = &args.image {
        return image(g, &repo, path, args);
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
    let created = Created {
        id: s.id.to_hex(),
        already_stored: false,
        files: st.files,
        dirs: st.dirs,
        bytes: st.bytes,
        bytes_read: s.bytes_read,
        bytes_new: s.written.bytes_new,
        blobs_new: s.written.blobs_new,
        skipped: s.skipped.len() as u64,
        duration_seconds: started.elapsed().as_secs_f64(),
    };
    crate::context::audit_target(&created.id);
    let mut value = created.json();
    local_fields(&mut value, &s.snapshot, &s.written, &s.skipped);
    extend_value(
        &mut value,
        json!({ "files_unchanged": s.files_unchanged, "packs_written": s.written.packs }),
    );
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
    let st = &s.snapshot.stats;
    let created = Created {
        id: s.id.to_hex(),
        already_stored: false,
        files: st.files,
        dirs: st.dirs,
        bytes: st.bytes,
        bytes_read: s.bytes_read,
        bytes_new: s.written.bytes_new,
        blobs_new: s.written.blobs_new,
        skipped: 0,
        duration_seconds: started.elapsed().as_secs_f64(),
    };
    crate::context::audit_target(&created.id);
    let mut value = created.json();
    local_fields(&mut value, &s.snapshot, &s.written, &[]);
    let extra = json!({
        "size": s.size,
        "block_size": repo.config().block_size,
        "blocks": s.blocks,
        "holes": s.holes,
        "blocks_inherited": s.inherited,
    });
    extend_value(&mut value, extra);
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
    let st = &s.snapshot.stats;
    let created = Created {
        id: s.id.to_hex(),
        already_stored: s.already_stored,
        files: st.files,
        dirs: st.dirs,
        bytes: st.bytes,
        bytes_read: s.input_size,
        bytes_new: s.written.bytes_new,
        blobs_new: s.written.blobs_new,
        skipped: 0,
        duration_seconds: started.elapsed().as_secs_f64(),
    };
    crate::context::audit_target(&created.id);
    let mut value = created.json();
    local_fields(&mut value, &s.snapshot, &s.written, &[]);
    let extra = json!({
        "members": s.members,
        "size": s.size,
        "input_size": s.input_size,
        "diff_id": s.diff_id,
        "digest": s.digest,
        "compression": s.compression,
        "kept_compressed": s.recipe.as_ref().and_then(|r| r.kept_compressed.clone()),
    });
    extend_value(&mut value, extra);
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

fn image(g: &Global, repo: &Repository, path: &std::path::Path, args: &SnapshotArgs) -> Result<ExitCode> {
    let display = ProgressDisplay::start("snapshot");
    let opts = ImageOptions {
        labels: labels(g, args),
        progress: Some(display.counters()),
    };
    let started = std::time::Instant::now();
    let result = snapshot_image(repo, path, &opts);
    display.finish();
    let s = result?;
    let st = &s.snapshot.stats;
    let created = Created {
        id: s.id.to_hex(),
        already_stored: false,
        files: st.files,
        dirs: st.dirs,
        bytes: st.bytes,
        bytes_read: st.bytes,
        bytes_new: s.written.bytes_new,
        blobs_new: s.written.blobs_new,
        skipped: 0,
        duration_seconds: started.elapsed().as_secs_f64(),
    };
    crate::context::audit_target(&created.id);
    let mut value = created.json();
    local_fields(&mut value, &s.snapshot, &s.written, &[]);
    let layers: Vec<Value> = s.layers.iter().map(image_layer_json).collect();
    extend_value(
        &mut value,
        json!({"format": s.format.name(), "layers": layers, "unreferenced": s.unreferenced}),
    );
    emit(g.json, &value, || image_text(&s));
    Ok(ExitCode::SUCCESS)
}

fn image_layer_json(l: &ImageLayer) -> Value {
    let mut obj = Map::new();
    put_path(&mut obj, "path", &l.path);
    extend(
        &mut obj,
        json!({
            "snapshot": l.snapshot.to_hex(),
            "already_stored": l.already_stored,
            "digest": l.digest,
            "diff_id": l.diff_id,
            "compression": l.compression,
            "size": l.size,
            "kept_compressed": l.kept_compressed,
            "bytes_new": l.written.bytes_new,
            "raw_bytes_new": l.written.raw_new,
        }),
    );
    Value::Object(obj)
}

fn image_text(s: &ImageSummary) -> String {
    let mut lines = vec![format!(
        "image ({}): {} files kept as given, {} layers",
        s.format.name(),
        s.files,
        s.layers.len()
    )];
    for l in &s.layers {
        lines.push(format!(
            "  layer {} ({}, {}){}{}",
            l.digest,
            l.compression,
            bytes(l.size),
            if l.already_stored { ", already stored" } else { "" },
            l.kept_compressed
                .as_ref()
                .map(|why| format!(", compressed bytes kept: {why}"))
                .unwrap_or_default()
        ));
    }
    if !s.unreferenced.is_empty() {
        lines.push(format!("left out {} blobs nothing refers to", s.unreferenced.len()));
    }
    lines.push(format!(
        "added to the repository: {} ({} stored)\nsnapshot {}",
        bytes(s.written.raw_new),
        bytes(s.written.bytes_new),
        s.id
    ));
    lines.join("\n")
}
