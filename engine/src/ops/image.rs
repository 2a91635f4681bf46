//! Container images: an OCI image layout or a docker archive, stored as one snapshot whose
//! root is the image's own file tree, where each layer blob is a layer (stored file by
//! file, with the recipe that rebuilds its compressed bytes) and every other file (index,
//! manifests, configs) is kept byte for byte. See `format-spec/image.md`.

pub mod source;
pub mod view;
mod write;

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Error, Result};
use crate::format::blob::BlobKind;
use crate::format::snapshot::{Snapshot, SnapshotStats, SourceKind};
use crate::format::tree::{Content, Entry, EntryKind, TreeNode};
use crate::id::{SnapshotId, TreeId};
use crate::ops::Labels;
use crate::ops::progress::Progress;
use crate::ops::stream::{StreamError, store_stream};
use crate::ops::tar::{LayerRef, TarOptions, TarSummary, snapshot_tar};
use crate::repo::Repository;
use crate::repo::writer::{BlobWriter, WriteStats};

pub use source::ImageFormat;
use source::{ImageSource, Item, read_image, sha256_of};
pub use write::{ImageRestore, restore_image, write_image_archive};

/// Metadata key holding the format an image was given in (`oci`, `docker-archive`).
pub const FORMAT_KEY: &str = "oci.image_format";
/// xattr of a layer entry: `sha256:<hex>` of the blob as given.
pub const XATTR_DIGEST: &[u8] = b"amber.oci.digest";
/// xattr of a layer entry: its diff id.
pub const XATTR_DIFF_ID: &[u8] = b"amber.oci.diff_id";
/// xattr of a layer entry: `none`, `gzip` or `zstd`.
pub const XATTR_COMPRESSION: &[u8] = b"amber.oci.compression";
/// xattr of a layer entry: the id of the layer snapshot it was stored as.
pub const XATTR_LAYER_SNAPSHOT: &[u8] = b"amber.layer.snapshot";

/// What to record with an image snapshot.
#[derive(Clone, Debug, Default)]
pub struct ImageOptions {
    /// What the snapshot records about itself.
    pub labels: Labels,
    /// Live counters.
    pub progress: Option<std::sync::Arc<Progress>>,
}

/// One layer of an image snapshot, as stored.
#[derive(Clone, Debug)]
pub struct ImageLayer {
    /// Its path in the image (`blobs/sha256/<hex>`, or a docker archive's member).
    pub path: Vec<u8>,
    /// The layer snapshot it was stored as (new or already held).
    pub snapshot: SnapshotId,
    /// It was held already.
    pub already_stored: bool,
    /// `sha256:<hex>` of the blob as given.
    pub digest: String,
    /// Its diff id.
    pub diff_id: String,
    /// `none`, `gzip` or `zstd`.
    pub compression: String,
    /// Bytes as given.
    pub size: u64,
    /// Why its compressed bytes are kept rather than rebuilt, when they are.
    pub kept_compressed: Option<String>,
    /// What storing it added to the store.
    pub written: WriteStats,
}

/// What an image snapshot did.
#[derive(Clone, Debug)]
pub struct ImageSummary {
    /// The snapshot.
    pub id: SnapshotId,
    /// Its object.
    pub snapshot: Snapshot,
    /// The format given.
    pub format: ImageFormat,
    /// Its layers.
    pub layers: Vec<ImageLayer>,
    /// Files kept byte for byte (index, manifests, configs, ...).
    pub files: u64,
    /// Blobs of the layout that nothing refers to, left out.
    pub unreferenced: Vec<String>,
    /// What the store grew by (layers included).
    pub written: WriteStats,
}

/// Snapshots the image at `path` (an OCI layout directory or a docker archive). Every blob
/// is checked against its digest before anything is stored; a bad image commits nothing
/// (layers stored before a later failure remain as ordinary layer snapshots).
///
/// # Errors
/// [`Error::InvalidArgument`] for a malformed image; store errors.
pub fn snapshot_image(repo: &Repository, path: &Path, opts: &ImageOptions) -> Result<ImageSummary> {
    if let Some((k, _)) = opts.labels.metadata.iter().find(|(k, _)| k.starts_with("oci.")) {
        return Err(Error::InvalidArgument(format!(
            "metadata key {k:?}: keys starting with \"oci.\" are reserved"
        )));
    }
    let image = read_image(path)?;
    check_layers(&image)?;
    let mut written = WriteStats::default();
    let mut layers = Vec::new();
    let mut leaves = BTreeMap::new();
    for (name, item) in &image.items {
        if let Item::Layer(span) = item {
            let layer = store_layer(repo, name, span, opts)?;
            add(&mut written, &layer.written);
            leaves.insert(name.clone(), layer_entry(&layer, span.len));
            layers.push(image_layer(name, &layer, span.len));
        }
    }
    let writer = BlobWriter::new(repo)?;
    let progress = opts.progress.clone().unwrap_or_default();
    let mut files = 0u64;
    for (name, item) in &image.items {
        let entry = match item {
            Item::Layer(_) => continue,
            Item::File(span) => {
                files += 1;
                file_entry(&writer, span, &progress)?
            }
            Item::Symlink(target) => symlink_entry(target),
        };
        leaves.insert(name.clone(), entry);
    }
    let bytes = image.items.values().map(item_len).sum();
    let (id, snapshot) = commit_tree(
        repo,
        writer,
        leaves,
        &mut written,
        &ImageCommit {
            format: image.format,
            labels: &opts.labels,
            files: files + layers.len() as u64,
            bytes,
            source_name: path.display().to_string(),
        },
    )?;
    Ok(ImageSummary {
        id,
        snapshot,
        format: image.format,
        layers,
        files,
        unreferenced: image.unreferenced,
        written,
    })
}

/// What the image snapshot object records.
struct ImageCommit<'a> {
    format: ImageFormat,
    labels: &'a Labels,
    files: u64,
    bytes: u64,
    source_name: String,
}

/// Stores the directories of `leaves`, then commits the image snapshot.
fn commit_tree(
    repo: &Repository,
    writer: BlobWriter,
    leaves: BTreeMap<Vec<u8>, Entry>,
    written: &mut WriteStats,
    what: &ImageCommit<'_>,
) -> Result<(SnapshotId, Snapshot)> {
    let (root, dirs) = store_tree(&writer, leaves)?;
    add(written, &writer.finish()?);
    let mut labels = what.labels.clone();
    labels.metadata.push((FORMAT_KEY.into(), what.format.name().into()));
    let stats = SnapshotStats {
        files: what.files,
        dirs,
        bytes: what.bytes,
        bytes_new: written.bytes_new,
        blobs_new: written.blobs_new,
    };
    let snapshot = labels.snapshot(SourceKind::Image, *root.hash(), None, what.source_name.clone(), stats);
    let id = repo.commit_snapshot(&snapshot)?;
    Ok((id, snapshot))
}

fn symlink_entry(target: &[u8]) -> Entry {
    let mut e = Entry::new(Vec::new(), EntryKind::Symlink);
    e.mode = 0o777;
    e.link_target = target.to_vec();
    e
}

/// An image whose layers were stored already (pushed one by one as layer snapshots): its
/// other files' bytes, its links, and for each layer blob the layer snapshot it is.
#[derive(Clone, Debug)]
pub struct ImageParts {
    /// The format it was given in.
    pub format: ImageFormat,
    /// Files kept byte for byte: path → bytes.
    pub files: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Symbolic links: path → target.
    pub symlinks: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Layer blobs: path → (layer snapshot, size of the blob as given).
    pub layers: BTreeMap<Vec<u8>, (SnapshotId, u64)>,
    /// The name recorded as the source path.
    pub source_name: String,
}

/// Commits an image from parts whose layers the vault holds. Checks what it can without
/// the blobs: every path is relative and stays inside, a file named `blobs/sha256/HEX`
/// hashes to HEX, a layer blob so named has that digest, and every layer snapshot is a
/// layer of this vault.
///
/// # Errors
/// [`Error::InvalidArgument`] for bad parts; store errors.
pub fn commit_image_parts(repo: &Repository, parts: &ImageParts, labels: &Labels) -> Result<ImageSummary> {
    let writer = BlobWriter::new(repo)?;
    let mut leaves = BTreeMap::new();
    let mut layers = Vec::new();
    for (path, data) in &parts.files {
        source::check_path(path)?;
        if let Some(expected) = source::named_digest(path) {
            let (actual, _) = sha256_of(&mut data.as_slice(), "image file")?;
            if actual != expected {
                return Err(Error::InvalidArgument(format!(
                    "{} does not match its digest: its bytes hash to {actual}",
                    String::from_utf8_lossy(path)
                )));
            }
        }
        let mut e = Entry::new(Vec::new(), EntryKind::File);
        e.mode = 0o644;
        e.size = data.len() as u64;
        e.content = crate::ops::stream::store_bytes(&writer, data)?;
        leaves.insert(path.clone(), e);
    }
    for (path, target) in &parts.symlinks {
        source::check_path(path)?;
        source::check_link(path, target)?;
        leaves.insert(path.clone(), symlink_entry(target));
    }
    for (path, (id, size)) in &parts.layers {
        source::check_path(path)?;
        let snap = repo.load_snapshot(*id)?;
        let layer = LayerRef::of_snapshot(*id, &snap)?;
        if let Some(expected) = source::named_digest(path)
            && expected != layer.digest
        {
            return Err(Error::InvalidArgument(format!(
                "layer snapshot {id} has digest {}, not the {expected} its path names",
                layer.digest
            )));
        }
        leaves.insert(path.clone(), layer_entry_of(&layer, *id, *size));
        layers.push(ImageLayer {
            path: path.clone(),
            snapshot: *id,
            already_stored: true,
            digest: layer.digest.clone(),
            diff_id: layer.diff_id.clone(),
            compression: layer.compression.clone(),
            size: *size,
            kept_compressed: None,
            written: WriteStats::default(),
        });
    }
    let files = (parts.files.len() + parts.layers.len()) as u64;
    let bytes =
        parts.files.values().map(|d| d.len() as u64).sum::<u64>() + parts.layers.values().map(|(_, n)| n).sum::<u64>();
    let mut written = WriteStats::default();
    let (id, snapshot) = commit_tree(
        repo,
        writer,
        leaves,
        &mut written,
        &ImageCommit {
            format: parts.format,
            labels,
            files,
            bytes,
            source_name: parts.source_name.clone(),
        },
    )?;
    Ok(ImageSummary {
        id,
        snapshot,
        format: parts.format,
        layers,
        files: parts.files.len() as u64,
        unreferenced: Vec::new(),
        written,
    })
}

fn item_len(item: &Item) -> u64 {
    match item {
        Item::File(s) | Item::Layer(s) => s.len,
        Item::Symlink(_) => 0,
    }
}

fn add(total: &mut WriteStats, more: &WriteStats) {
    total.blobs_new += more.blobs_new;
    total.raw_new += more.raw_new;
    total.bytes_new += more.bytes_new;
    total.packs += more.packs;
}

/// Digests of OCI layer blobs were checked while reading; a docker archive's layers are
/// checked here against the diff ids its configs list, before anything is stored.
fn check_layers(image: &ImageSource) -> Result<()> {
    for (name, item) in &image.items {
        if let Item::Layer(span) = item
            && let Some(expected) = image.layer_digests.get(name)
        {
            let (actual, _) = sha256_of(&mut span.open()?, &String::from_utf8_lossy(name))?;
            if &actual != expected {
                return Err(Error::InvalidArgument(format!(
                    "layer {} does not match its digest {expected}",
                    String::from_utf8_lossy(name)
                )));
            }
        }
    }
    Ok(())
}

fn store_layer(repo: &Repository, name: &[u8], span: &source::Span, opts: &ImageOptions) -> Result<TarSummary> {
    let tar_opts = TarOptions {
        labels: opts.labels.clone(),
        progress: opts.progress.clone(),
        confine_paths: true,
    };
    let shown = String::from_utf8_lossy(name).into_owned();
    snapshot_tar(repo, &mut span.open()?, &shown, &tar_opts).map_err(|e| match e {
        Error::InvalidArgument(detail) => Error::InvalidArgument(format!("layer {shown}: {detail}")),
        other => other,
    })
}

fn image_layer(name: &[u8], layer: &TarSummary, size: u64) -> ImageLayer {
    ImageLayer {
        path: name.to_vec(),
        snapshot: layer.id,
        already_stored: layer.already_stored,
        digest: layer.digest.clone(),
        diff_id: layer.diff_id.clone(),
        compression: layer.compression.to_string(),
        size,
        kept_compressed: layer.recipe.as_ref().and_then(|r| r.kept_compressed.clone()),
        written: layer.written,
    }
}

/// A layer blob's entry: a regular file whose content names the layer's root node.
fn layer_entry(layer: &TarSummary, size: u64) -> Entry {
    let r = LayerRef {
        root: TreeId::new(layer.snapshot.root),
        diff_id: layer.diff_id.clone(),
        digest: layer.digest.clone(),
        compression: layer.compression.to_string(),
        name: layer.id.to_hex(),
    };
    layer_entry_of(&r, layer.id, size)
}

fn layer_entry_of(layer: &LayerRef, id: SnapshotId, size: u64) -> Entry {
    let mut e = Entry::new(Vec::new(), EntryKind::File);
    e.mode = 0o644;
    e.size = size;
    e.content = Content::Tree(layer.root);
    e.xattrs = vec![
        (XATTR_LAYER_SNAPSHOT.to_vec(), id.to_hex().into_bytes()),
        (XATTR_COMPRESSION.to_vec(), layer.compression.as_bytes().to_vec()),
        (XATTR_DIFF_ID.to_vec(), layer.diff_id.clone().into_bytes()),
        (XATTR_DIGEST.to_vec(), layer.digest.clone().into_bytes()),
    ];
    e.xattrs.sort();
    e
}

fn file_entry(writer: &BlobWriter, span: &source::Span, progress: &Progress) -> Result<Entry> {
    let (content, got) = store_stream(writer, &mut span.open()?, span.len, progress).map_err(|e| match e {
        StreamError::Source(io) => Error::io(span.file.display().to_string(), io),
        StreamError::Engine(e) => e,
    })?;
    if got != span.len {
        return Err(Error::InvalidArgument(format!(
            "{} ended after {got} of {} bytes",
            span.file.display(),
            span.len
        )));
    }
    let mut e = Entry::new(Vec::new(), EntryKind::File);
    e.mode = 0o644;
    e.size = span.len;
    e.content = content;
    Ok(e)
}

/// Stores the directories of `leaves` (paths `a/b/c` → entries) bottom up; returns the
/// root's id and the number of directories below it.
fn store_tree(writer: &BlobWriter, leaves: BTreeMap<Vec<u8>, Entry>) -> Result<(TreeId, u64)> {
    #[derive(Default)]
    struct Dir {
        dirs: BTreeMap<Vec<u8>, Dir>,
        files: Vec<Entry>,
    }
    fn store(writer: &BlobWriter, dir: Dir, count: &mut u64) -> Result<TreeId> {
        let mut entries = dir.files;
        for (name, sub) in dir.dirs {
            *count += 1;
            let mut e = Entry::new(name, EntryKind::Dir);
            e.mode = 0o755;
            e.content = Content::Tree(store(writer, sub, count)?);
            entries.push(e);
        }
        let node = TreeNode::new(entries)?;
        Ok(TreeId::new(writer.store_meta(BlobKind::Tree, &node.encode())?))
    }
    let mut top = Dir::default();
    for (path, mut entry) in leaves {
        let mut parts: Vec<&[u8]> = path.split(|&b| b == b'/').collect();
        let name = parts.pop().unwrap_or_default().to_vec();
        let mut at = &mut top;
        for p in parts {
            at = at.dirs.entry(p.to_vec()).or_default();
        }
        entry.name = name;
        at.files.push(entry);
    }
    let mut count = 0;
    let root = store(writer, top, &mut count)?;
    Ok((root, count))
}

/// A layer entry's reference, from its xattrs.
pub fn layer_ref(entry: &Entry, path: &[u8]) -> Result<LayerRef> {
    let Content::Tree(root) = entry.content else {
        return Err(Error::Pipeline("not a layer entry".into()));
    };
    let attr = |name: &[u8]| {
        entry
            .xattrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default()
    };
    Ok(LayerRef {
        root,
        diff_id: attr(XATTR_DIFF_ID),
        digest: attr(XATTR_DIGEST),
        compression: attr(XATTR_COMPRESSION),
        name: String::from_utf8_lossy(path).into_owned(),
    })
}
