//! Looking into a stored image: its images (manifests) with their layers in order, the
//! files of each layer, the file system they make together, and how two images differ.

use std::collections::BTreeMap;

use serde_json::Value;

use super::write::{blob_of, json, stored_file, walk};
use super::{FORMAT_KEY, layer_ref};
use crate::error::{Error, Result};
use crate::format::snapshot::{Snapshot, SourceKind};
use crate::format::tree::{Content, Entry, EntryKind};
use crate::id::{SnapshotId, TreeId};
use crate::ops::diff::{Change, ChangeKind};
use crate::ops::members::for_each_member_of_layout;
use crate::ops::tar::{LAYOUT_ENTRY, LayerRef, recorded};
use crate::repo::Repository;

/// One image of a stored image snapshot (one manifest).
#[derive(Clone, Debug)]
pub struct ManifestView {
    /// Its reference name, when the index or archive gives one.
    pub name: Option<String>,
    /// Path of its config in the stored image.
    pub config: Vec<u8>,
    /// Its layers, base first: (path in the stored image, layer).
    pub layers: Vec<(Vec<u8>, LayerRef)>,
}

fn not_image(id: SnapshotId, snap: &Snapshot) -> Error {
    Error::InvalidArgument(format!(
        "snapshot {id} is a {} snapshot, not an image",
        snap.source.name()
    ))
}

/// The images of image snapshot `id`, in the order its index or archive lists them.
///
/// # Errors
/// [`Error::InvalidArgument`] when it is not an image; store and corruption errors.
pub fn manifests(repo: &Repository, id: SnapshotId, snap: &Snapshot) -> Result<Vec<ManifestView>> {
    if snap.source != SourceKind::Image {
        return Err(not_image(id, snap));
    }
    let root = TreeId::new(snap.root);
    let files = all_entries(repo, root)?;
    let layer = |path: &str| -> Result<(Vec<u8>, LayerRef)> {
        let resolved = resolve(&files, path.as_bytes())?;
        let entry = files.get(&resolved).ok_or_else(|| missing(path))?;
        Ok((resolved.clone(), layer_ref(entry, &resolved)?))
    };
    let mut out = Vec::new();
    if recorded(snap, FORMAT_KEY) == Some("docker-archive") {
        let (_, body) = stored_file(repo, root, "manifest.json")?;
        for image in json(&body, "manifest.json")?.as_array().into_iter().flatten() {
            let mut layers = Vec::new();
            for l in image.get("Layers").and_then(Value::as_array).into_iter().flatten() {
                layers.push(layer(l.as_str().unwrap_or_default())?);
            }
            out.push(ManifestView {
                name: image.pointer("/RepoTags/0").and_then(Value::as_str).map(str::to_string),
                config: image
                    .get("Config")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .as_bytes()
                    .to_vec(),
                layers,
            });
        }
        return Ok(out);
    }
    let (_, body) = stored_file(repo, root, "index.json")?;
    oci_index(repo, root, &json(&body, "index.json")?, &layer, &mut out, 0)?;
    Ok(out)
}

type LayerLookup<'a> = dyn Fn(&str) -> Result<(Vec<u8>, LayerRef)> + 'a;

fn oci_index(
    repo: &Repository,
    root: TreeId,
    index: &Value,
    layer: &LayerLookup<'_>,
    out: &mut Vec<ManifestView>,
    depth: u32,
) -> Result<()> {
    for desc in index.get("manifests").and_then(Value::as_array).into_iter().flatten() {
        let (_, body) = stored_file(repo, root, &blob_of(desc))?;
        let doc = json(&body, "manifest")?;
        if doc.get("manifests").is_some() && depth < 8 {
            oci_index(repo, root, &doc, layer, out, depth + 1)?;
            continue;
        }
        let mut layers = Vec::new();
        for l in doc.get("layers").and_then(Value::as_array).into_iter().flatten() {
            layers.push(layer(&blob_of(l))?);
        }
        out.push(ManifestView {
            name: desc
                .pointer("/annotations/org.opencontainers.image.ref.name")
                .and_then(Value::as_str)
                .map(str::to_string),
            config: blob_of(doc.get("config").unwrap_or(&Value::Null)).into_bytes(),
            layers,
        });
    }
    Ok(())
}

fn missing(path: &str) -> Error {
    Error::Corrupt {
        kind: "image",
        id: String::new(),
        detail: format!("{path} is not in the stored image"),
    }
}

fn all_entries(repo: &Repository, root: TreeId) -> Result<BTreeMap<Vec<u8>, Entry>> {
    let mut files = BTreeMap::new();
    walk(repo, root, b"", &mut |path, entry| {
        files.insert(path.to_vec(), entry.clone());
        Ok(())
    })?;
    Ok(files)
}

/// Follows symbolic links of the stored archive to the file they name.
fn resolve(files: &BTreeMap<Vec<u8>, Entry>, path: &[u8]) -> Result<Vec<u8>> {
    let mut at = path.to_vec();
    for _ in 0..16 {
        let entry = files.get(&at).ok_or_else(|| missing(&String::from_utf8_lossy(&at)))?;
        if entry.kind != EntryKind::Symlink {
            return Ok(at);
        }
        let mut parts: Vec<&[u8]> = at.split(|&b| b == b'/').collect();
        parts.pop();
        for c in entry.link_target.split(|&b| b == b'/') {
            match c {
                b"" | b"." => {}
                b".." => {
                    parts.pop();
                }
                c => parts.push(c),
            }
        }
        at = parts.join(&b'/');
    }
    Err(missing(&String::from_utf8_lossy(path)))
}

/// The members of one layer: (path, entry), in stream order.
///
/// # Errors
/// Store and corruption errors.
pub fn layer_files(repo: &Repository, layer: &LayerRef) -> Result<Vec<(Vec<u8>, Entry)>> {
    let node = repo.load_tree(layer.root)?;
    let layout = node
        .get(LAYOUT_ENTRY)
        .map(|e| e.content.clone())
        .unwrap_or(Content::None);
    let mut out = Vec::new();
    for_each_member_of_layout(repo, &layout, &mut |path, e| {
        out.push((path.to_vec(), e.clone()));
        Ok(())
    })?;
    Ok(out)
}

/// What `ls` shows of an image: every stored file, and below each layer blob its members.
///
/// # Errors
/// As [`manifests`].
pub fn listing(repo: &Repository, id: SnapshotId, snap: &Snapshot) -> Result<Vec<(Vec<u8>, Entry)>> {
    if snap.source != SourceKind::Image {
        return Err(not_image(id, snap));
    }
    let mut out = Vec::new();
    for (path, entry) in all_entries(repo, TreeId::new(snap.root))? {
        let is_layer = entry.kind == EntryKind::File && matches!(entry.content, Content::Tree(_));
        out.push((path.clone(), entry.clone()));
        if is_layer {
            for (member, e) in layer_files(repo, &layer_ref(&entry, &path)?)? {
                let mut full = path.clone();
                full.push(b'/');
                full.extend(member);
                out.push((full, e));
            }
        }
    }
    Ok(out)
}

/// The file system an image's layers make together, whiteouts applied (OCI image spec,
/// "Representing changes"): path → entry.
///
/// # Errors
/// Store and corruption errors.
pub fn flattened(repo: &Repository, image: &ManifestView) -> Result<BTreeMap<Vec<u8>, Entry>> {
    let mut fs: BTreeMap<Vec<u8>, Entry> = BTreeMap::new();
    for (_, layer) in &image.layers {
        for (path, entry) in layer_files(repo, layer)? {
            let (dir, name) = match path.iter().rposition(|&b| b == b'/') {
                Some(i) => (path.get(..i).unwrap_or_default(), path.get(i + 1..).unwrap_or_default()),
                None => (&b""[..], path.as_slice()),
            };
            if name == b".wh..wh..opq" {
                remove_below(&mut fs, dir, false);
            } else if let Some(hidden) = name.strip_prefix(b".wh.") {
                let mut gone = dir.to_vec();
                if !gone.is_empty() {
                    gone.push(b'/');
                }
                gone.extend_from_slice(hidden);
                remove_below(&mut fs, &gone, true);
            } else {
                if entry.kind != EntryKind::Dir {
                    remove_below(&mut fs, &path, false);
                }
                fs.insert(path, entry);
            }
        }
    }
    Ok(fs)
}

/// Removes everything strictly below `dir`, and `dir` itself when `itself`.
fn remove_below(fs: &mut BTreeMap<Vec<u8>, Entry>, dir: &[u8], itself: bool) {
    if itself {
        fs.remove(dir);
    }
    let mut prefix = dir.to_vec();
    if !prefix.is_empty() {
        prefix.push(b'/');
    }
    let doomed: Vec<Vec<u8>> = fs
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .map(|(k, _)| k.clone())
        .collect();
    for k in doomed {
        fs.remove(&k);
    }
}

/// How two file systems differ, in path order.
pub fn diff_flattened(a: &BTreeMap<Vec<u8>, Entry>, b: &BTreeMap<Vec<u8>, Entry>) -> Vec<Change> {
    let mut paths: Vec<&Vec<u8>> = a.keys().chain(b.keys()).collect();
    paths.sort();
    paths.dedup();
    let mut out = Vec::new();
    for path in paths {
        let change = |kind, e: &Entry, before: u64, after: u64| Change {
            path: path.clone(),
            kind,
            entry_kind: e.kind,
            size_before: before,
            size_after: after,
        };
        match (a.get(path), b.get(path)) {
            (None, Some(e)) => out.push(change(ChangeKind::Added, e, 0, e.size)),
            (Some(e), None) => out.push(change(ChangeKind::Removed, e, e.size, 0)),
            (Some(x), Some(y)) if x.kind != y.kind => out.push(change(ChangeKind::TypeChanged, y, x.size, y.size)),
            (Some(x), Some(y)) if x.size != y.size || x.content != y.content => {
                out.push(change(ChangeKind::Modified, y, x.size, y.size));
            }
            (Some(x), Some(y))
                if (x.mode, x.uid, x.gid, x.mtime, &x.link_target)
                    != (y.mode, y.uid, y.gid, y.mtime, &y.link_target) =>
            {
                out.push(change(ChangeKind::Metadata, y, x.size, y.size));
            }
            _ => {}
        }
    }
    out
}
