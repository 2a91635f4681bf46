//! Writing an image snapshot back: as the OCI layout or docker archive it was given (every
//! byte as it was), or an OCI layout converted to a docker archive.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::source::ImageFormat;
use super::{FORMAT_KEY, layer_ref};
use crate::error::{Error, Result};
use crate::format::snapshot::SourceKind;
use crate::format::tree::{Content, Entry, EntryKind};
use crate::id::{SnapshotId, TreeId};
use crate::ops::tar::{rebuild_layer_as_given, rebuild_layer_plain, recorded, write_content};
use crate::repo::Repository;

/// What an image restore wrote.
#[derive(Clone, Debug, Default)]
pub struct ImageRestore {
    /// The format written.
    pub format: &'static str,
    /// Files written (layers included).
    pub files: u64,
    /// Layers written.
    pub layers: u64,
    /// Bytes written.
    pub bytes: u64,
}

/// Visits every non-directory entry below `tree`, depth first, with its path.
pub(crate) fn walk(
    repo: &Repository,
    tree: TreeId,
    prefix: &[u8],
    visit: &mut dyn FnMut(&[u8], &Entry) -> Result<()>,
) -> Result<()> {
    for entry in repo.load_tree(tree)?.into_entries() {
        let mut path = prefix.to_vec();
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(&entry.name);
        match (&entry.kind, &entry.content) {
            (EntryKind::Dir, Content::Tree(sub)) => walk(repo, *sub, &path, visit)?,
            _ => visit(&path, &entry)?,
        }
    }
    Ok(())
}

fn is_layer(entry: &Entry) -> bool {
    entry.kind == EntryKind::File && matches!(entry.content, Content::Tree(_))
}

/// Writes image snapshot `id` to `out`: a directory for `oci`, a file for `docker-archive`.
/// `format` defaults to the one the image was given in. Every layer is checked against
/// its diff id and digest while it is written.
///
/// # Errors
/// [`Error::InvalidArgument`] when the snapshot is not an image, `out` exists and is not an
/// empty directory, or the conversion is not supported; store, corruption and write errors.
pub fn restore_image(
    repo: &Repository,
    id: SnapshotId,
    out: &Path,
    format: Option<ImageFormat>,
) -> Result<ImageRestore> {
    let (given, root) = given_format(repo, id)?;
    match (given, format.unwrap_or(given)) {
        (ImageFormat::Oci, ImageFormat::Oci) => write_layout(repo, root, out),
        (ImageFormat::DockerArchive, ImageFormat::DockerArchive) => archive_file(out, |w| write_archive(repo, root, w)),
        (ImageFormat::Oci, ImageFormat::DockerArchive) => archive_file(out, |w| oci_to_archive(repo, root, w)),
        (ImageFormat::DockerArchive, ImageFormat::Oci) => archive_to_layout(repo, id, out),
    }
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::io(path.display().to_string(), e)
}

/// Refuses an output that exists, unless it is an empty directory.
fn fresh_dir(out: &Path) -> Result<()> {
    match std::fs::read_dir(out) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(Error::InvalidArgument(format!("{} is not empty", out.display())));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir_all(out).map_err(io_err(out)),
        Err(e) => Err(Error::io(out.display().to_string(), e)),
    }
}

fn fresh_file(out: &Path) -> Result<(PathBuf, BufWriter<File>)> {
    if out.exists() {
        return Err(Error::InvalidArgument(format!("{} exists", out.display())));
    }
    let partial = PathBuf::from(format!("{}.amber-partial", out.display()));
    let f = File::create(&partial).map_err(io_err(&partial))?;
    Ok((partial, BufWriter::with_capacity(1 << 20, f)))
}

/// Syncs and renames the partial file into place.
fn commit_file(partial: &Path, out: &Path, w: BufWriter<File>) -> Result<()> {
    let f = w
        .into_inner()
        .map_err(|e| Error::io(partial.display().to_string(), e.into_error()))?;
    f.sync_all().map_err(io_err(partial))?;
    std::fs::rename(partial, out).map_err(io_err(out))
}

fn write_entry(repo: &Repository, path: &[u8], entry: &Entry, out: &mut dyn Write) -> Result<u64> {
    if is_layer(entry) {
        rebuild_layer_as_given(repo, &layer_ref(entry, path)?, out)
    } else {
        write_content(repo, &entry.content, out)
    }
}

fn write_layout(repo: &Repository, root: TreeId, out: &Path) -> Result<ImageRestore> {
    fresh_dir(out)?;
    let mut report = ImageRestore {
        format: "oci",
        ..ImageRestore::default()
    };
    walk(repo, root, b"", &mut |path, entry| {
        let rel = std::str::from_utf8(path)
            .map_err(|_| Error::Corrupt {
                kind: "image",
                id: root.to_hex(),
                detail: "a path that is not UTF-8".into(),
            })?
            .to_string();
        let target = out.join(&rel);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        if entry.kind == EntryKind::Symlink {
            std::os::unix::fs::symlink(
                std::ffi::OsStr::new(&*String::from_utf8_lossy(&entry.link_target)),
                &target,
            )
            .map_err(io_err(&target))?;
            return Ok(());
        }
        let (partial, mut w) = fresh_file(&target)?;
        let n = write_entry(repo, path, entry, &mut w)?;
        commit_file(&partial, &target, w)?;
        report.files += 1;
        report.layers += u64::from(is_layer(entry));
        report.bytes += n;
        Ok(())
    })?;
    Ok(report)
}

/// A ustar header for a member of an archive Amber writes (owner root, time 0).
fn tar_header(name: &[u8], kind: u8, size: u64, link: &[u8]) -> Result<[u8; 512]> {
    let mut b = [0u8; 512];
    let (prefix, base) = split_name(name)?;
    let put = |b: &mut [u8; 512], at: usize, v: &[u8]| {
        if let Some(dst) = b.get_mut(at..at + v.len()) {
            dst.copy_from_slice(v);
        }
    };
    put(&mut b, 0, base);
    put(&mut b, 100, if kind == b'2' { b"0000777\0" } else { b"0000644\0" });
    put(&mut b, 108, b"0000000\0");
    put(&mut b, 116, b"0000000\0");
    put(&mut b, 124, format!("{size:011o}\0").as_bytes());
    put(&mut b, 136, b"00000000000\0");
    put(&mut b, 148, b"        ");
    put(&mut b, 156, &[kind]);
    if link.len() > 100 {
        return Err(Error::InvalidArgument("a link target over 100 bytes".into()));
    }
    put(&mut b, 157, link);
    put(&mut b, 257, b"ustar\0");
    put(&mut b, 263, b"00");
    put(&mut b, 345, prefix);
    let sum: u32 = b.iter().map(|&x| u32::from(x)).sum();
    put(&mut b, 148, format!("{sum:06o}\0 ").as_bytes());
    Ok(b)
}

/// Splits a path into ustar's prefix (≤ 155) and name (≤ 100) at a `/`.
fn split_name(name: &[u8]) -> Result<(&[u8], &[u8])> {
    if name.len() <= 100 {
        return Ok((b"", name));
    }
    let cut = name
        .iter()
        .enumerate()
        .filter(|(i, b)| **b == b'/' && *i <= 155 && name.len() - i - 1 <= 100)
        .map(|(i, _)| i)
        .next()
        .ok_or_else(|| {
            Error::InvalidArgument(format!(
                "path {:?} is too long for a ustar header",
                String::from_utf8_lossy(name)
            ))
        })?;
    Ok((
        name.get(..cut).unwrap_or_default(),
        name.get(cut + 1..).unwrap_or_default(),
    ))
}

struct ArchiveWriter<'w> {
    w: &'w mut dyn Write,
    bytes: u64,
}

impl ArchiveWriter<'_> {
    fn member(&mut self, name: &[u8], size: u64, write: &mut dyn FnMut(&mut dyn Write) -> Result<u64>) -> Result<()> {
        let io = |e| Error::io("image archive", e);
        self.w.write_all(&tar_header(name, b'0', size, b"")?).map_err(io)?;
        let n = write(&mut self.w)?;
        if n != size {
            return Err(Error::Corrupt {
                kind: "image member",
                id: String::from_utf8_lossy(name).into_owned(),
                detail: format!("{n} bytes where {size} were recorded"),
            });
        }
        let pad = (512 - size % 512) % 512;
        self.w.write_all(&vec![0u8; pad as usize]).map_err(io)?;
        self.bytes += size;
        Ok(())
    }

    fn symlink(&mut self, name: &[u8], target: &[u8]) -> Result<()> {
        self.w
            .write_all(&tar_header(name, b'2', 0, target)?)
            .map_err(|e| Error::io("image archive", e))
    }

    fn end(self) -> Result<()> {
        let io = |e| Error::io("image archive", e);
        self.w.write_all(&[0u8; 1024]).map_err(io)?;
        self.w.flush().map_err(io)
    }
}

/// Writes `build`'s archive to the file `out`, through a partial file renamed at the end.
fn archive_file(out: &Path, build: impl FnOnce(&mut dyn Write) -> Result<ImageRestore>) -> Result<ImageRestore> {
    let (partial, mut w) = fresh_file(out)?;
    let report = build(&mut w)?;
    commit_file(&partial, out, w)?;
    Ok(report)
}

/// Writes image snapshot `id` as one tar stream to `out`: the archive itself for a docker
/// archive, the layout's files for an OCI layout (`format` `oci`), or an OCI layout
/// converted to a docker archive. What a server sends for `restore --image`.
///
/// # Errors
/// As [`restore_image`].
pub fn write_image_archive(
    repo: &Repository,
    id: SnapshotId,
    format: Option<ImageFormat>,
    out: &mut dyn Write,
) -> Result<ImageRestore> {
    let (given, root) = given_format(repo, id)?;
    match (given, format.unwrap_or(given)) {
        (ImageFormat::Oci, ImageFormat::Oci) => {
            write_archive(repo, root, out).map(|r| ImageRestore { format: "oci", ..r })
        }
        (ImageFormat::DockerArchive, ImageFormat::DockerArchive) => write_archive(repo, root, out),
        (ImageFormat::Oci, ImageFormat::DockerArchive) => oci_to_archive(repo, root, out),
        (ImageFormat::DockerArchive, ImageFormat::Oci) => Err(no_conversion(id)),
    }
}

/// Writes the images of a docker archive as an OCI layout: each config as a blob (the
/// same bytes), each layer as given, a manifest per image and an index naming them with
/// their tags.
fn archive_to_layout(repo: &Repository, id: SnapshotId, out: &Path) -> Result<ImageRestore> {
    fresh_dir(out)?;
    let snap = repo.load_snapshot(id)?;
    let root = TreeId::new(snap.root);
    let mut report = ImageRestore {
        format: "oci",
        ..ImageRestore::default()
    };
    let put_blob = |bytes: &[u8], report: &mut ImageRestore| -> Result<(String, u64)> {
        let digest = format!(
            "sha256:{}",
            hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
        );
        write_file(&out.join(blob_path_of(&digest)), &mut |w| {
            w.write_all(bytes).map_err(|e| Error::io("image blob", e))?;
            Ok(bytes.len() as u64)
        })?;
        report.files += 1;
        report.bytes += bytes.len() as u64;
        Ok((digest, bytes.len() as u64))
    };
    let mut manifests = Vec::new();
    for image in super::view::manifests(repo, id, &snap)? {
        let (_, config) = stored_file(repo, root, &String::from_utf8_lossy(&image.config))?;
        let (config_digest, config_size) = put_blob(&config, &mut report)?;
        let mut layers = Vec::new();
        for (_, layer) in &image.layers {
            let size = write_file(&out.join(blob_path_of(&layer.digest)), &mut |w| {
                rebuild_layer_as_given(repo, layer, w)
            })?;
            report.files += 1;
            report.layers += 1;
            report.bytes += size;
            let media = match layer.compression.as_str() {
                "gzip" => "application/vnd.oci.image.layer.v1.tar+gzip",
                "zstd" => "application/vnd.oci.image.layer.v1.tar+zstd",
                _ => "application/vnd.oci.image.layer.v1.tar",
            };
            layers.push(serde_json::json!({"mediaType": media, "digest": layer.digest, "size": size}));
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
            "layers": layers,
        });
        let bytes = serde_json::to_vec(&manifest).map_err(|e| Error::Pipeline(e.to_string()))?;
        let (digest, size) = put_blob(&bytes, &mut report)?;
        let mut desc = serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": size});
        if let (Some(name), Some(obj)) = (&image.name, desc.as_object_mut()) {
            obj.insert(
                "annotations".into(),
                serde_json::json!({"org.opencontainers.image.ref.name": name}),
            );
        }
        manifests.push(desc);
    }
    let index = serde_json::json!({"schemaVersion": 2, "manifests": manifests});
    for (name, bytes) in [
        (
            "index.json",
            serde_json::to_vec(&index).map_err(|e| Error::Pipeline(e.to_string()))?,
        ),
        ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
    ] {
        write_file(&out.join(name), &mut |w| {
            w.write_all(&bytes).map_err(|e| Error::io(name, e))?;
            Ok(bytes.len() as u64)
        })?;
        report.files += 1;
    }
    Ok(report)
}

fn blob_path_of(digest: &str) -> String {
    format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"))
}

/// Writes one file through a partial file renamed into place; returns its length.
fn write_file(target: &Path, write: &mut dyn FnMut(&mut dyn Write) -> Result<u64>) -> Result<u64> {
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    if target.exists() {
        return Ok(std::fs::metadata(target).map_err(io_err(target))?.len());
    }
    let (partial, mut w) = fresh_file(target)?;
    let n = write(&mut w)?;
    commit_file(&partial, target, w)?;
    Ok(n)
}

fn no_conversion(id: SnapshotId) -> Error {
    Error::InvalidArgument(format!(
        "snapshot {id} was given as a docker archive: through a server it is read as one \
         (--format docker-archive); restore it locally to convert it to an OCI layout"
    ))
}

fn write_archive(repo: &Repository, root: TreeId, w: &mut dyn Write) -> Result<ImageRestore> {
    let mut a = ArchiveWriter { w, bytes: 0 };
    let mut report = ImageRestore {
        format: "docker-archive",
        ..ImageRestore::default()
    };
    walk(repo, root, b"", &mut |path, entry| {
        if entry.kind == EntryKind::Symlink {
            return a.symlink(path, &entry.link_target);
        }
        a.member(path, entry.size, &mut |w| write_entry(repo, path, entry, w))?;
        report.files += 1;
        report.layers += u64::from(is_layer(entry));
        Ok(())
    })?;
    report.bytes = a.bytes;
    a.end()?;
    Ok(report)
}

/// Reads one stored file of the image by its path.
pub(crate) fn stored_file(repo: &Repository, root: TreeId, want: &str) -> Result<(Entry, Vec<u8>)> {
    let mut found = None;
    walk(repo, root, b"", &mut |path, entry| {
        if path == want.as_bytes() {
            found = Some(entry.clone());
        }
        Ok(())
    })?;
    let entry = found.ok_or_else(|| Error::Corrupt {
        kind: "image",
        id: root.to_hex(),
        detail: format!("{want} is not in the stored image"),
    })?;
    let mut bytes = Vec::new();
    if !is_layer(&entry) {
        write_content(repo, &entry.content, &mut bytes)?;
    }
    Ok((entry, bytes))
}

pub(super) fn json(bytes: &[u8], what: &str) -> Result<Value> {
    serde_json::from_slice(bytes).map_err(|e| Error::Corrupt {
        kind: "image",
        id: what.to_string(),
        detail: format!("not JSON: {e}"),
    })
}

pub(super) fn blob_of(desc: &Value) -> String {
    let digest = desc.get("digest").and_then(Value::as_str).unwrap_or_default();
    format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"))
}

/// The format image snapshot `id` was given in, and its root.
fn given_format(repo: &Repository, id: SnapshotId) -> Result<(ImageFormat, TreeId)> {
    let snap = repo.load_snapshot(id)?;
    if snap.source != SourceKind::Image {
        return Err(Error::InvalidArgument(format!(
            "snapshot {id} is a {} snapshot, not an image",
            snap.source.name()
        )));
    }
    let given = ImageFormat::parse(recorded(&snap, FORMAT_KEY).unwrap_or("oci"))?;
    Ok((given, TreeId::new(snap.root)))
}

/// Writes the images an OCI layout's index names as a docker archive (`docker save`'s
/// layout as skopeo writes it): `manifest.json`, each config as `<hex>.json` (the same
/// bytes), each layer uncompressed as `<diff id hex>.tar`.
fn oci_to_archive(repo: &Repository, root: TreeId, w: &mut dyn Write) -> Result<ImageRestore> {
    let (_, index) = stored_file(repo, root, "index.json")?;
    let index = json(&index, "index.json")?;
    let mut images = Vec::new();
    let mut members: Vec<(String, String)> = Vec::new();
    for desc in index.get("manifests").and_then(Value::as_array).into_iter().flatten() {
        let (_, body) = stored_file(repo, root, &blob_of(desc))?;
        let manifest = json(&body, "manifest")?;
        let config_path = blob_of(manifest.get("config").unwrap_or(&Value::Null));
        let config_name = format!("{}.json", config_path.trim_start_matches("blobs/sha256/"));
        members.push((config_name.clone(), config_path));
        let mut layer_names = Vec::new();
        for layer in manifest.get("layers").and_then(Value::as_array).into_iter().flatten() {
            let path = blob_of(layer);
            let (entry, _) = stored_file(repo, root, &path)?;
            let diff = layer_ref(&entry, path.as_bytes())?.diff_id;
            let name = format!("{}.tar", diff.trim_start_matches("sha256:"));
            layer_names.push(Value::String(name.clone()));
            members.push((name, path));
        }
        let tags: Vec<Value> = desc
            .pointer("/annotations/org.opencontainers.image.ref.name")
            .and_then(Value::as_str)
            .map(|r| {
                Value::String(if r.contains(':') {
                    r.to_string()
                } else {
                    format!("amber/image:{r}")
                })
            })
            .into_iter()
            .collect();
        images.push(serde_json::json!({"Config": config_name, "RepoTags": tags, "Layers": layer_names}));
    }
    let manifest_json = serde_json::to_vec(&images).map_err(|e| Error::Pipeline(e.to_string()))?;
    let mut a = ArchiveWriter { w, bytes: 0 };
    let mut report = ImageRestore {
        format: "docker-archive",
        ..ImageRestore::default()
    };
    members.sort();
    members.dedup();
    for (name, path) in &members {
        let (entry, bytes) = stored_file(repo, root, path)?;
        if is_layer(&entry) {
            let layer = layer_ref(&entry, path.as_bytes())?;
            let size = repo
                .load_tree(layer.root)?
                .get(crate::ops::tar::LAYOUT_ENTRY)
                .map_or(0, |e| e.size);
            a.member(name.as_bytes(), size, &mut |w| rebuild_layer_plain(repo, &layer, w))?;
            report.layers += 1;
        } else {
            a.member(name.as_bytes(), bytes.len() as u64, &mut |w| {
                w.write_all(&bytes).map_err(|e| Error::io("image archive", e))?;
                Ok(bytes.len() as u64)
            })?;
        }
        report.files += 1;
    }
    a.member(b"manifest.json", manifest_json.len() as u64, &mut |w| {
        w.write_all(&manifest_json).map_err(|e| Error::io("image archive", e))?;
        Ok(manifest_json.len() as u64)
    })?;
    report.files += 1;
    report.bytes = a.bytes;
    a.end()?;
    Ok(report)
}
