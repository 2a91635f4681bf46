//! Reading an image as given: which files it has, which of them are layers, and whether
//! every blob is what its name and its descriptor say. Nothing here writes to a store.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use ring::digest::{Context, SHA256};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::format::tarhdr::{self, BLOCK, TarKind};

/// Largest manifest, index or config read into memory.
const MAX_JSON: u64 = 16 * 1024 * 1024;

/// The two ways an image is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageFormat {
    /// An OCI image layout directory.
    Oci,
    /// A `docker save` (or `skopeo copy … docker-archive:`) tar archive.
    DockerArchive,
}

impl ImageFormat {
    /// The name used in metadata, flags and JSON.
    pub fn name(self) -> &'static str {
        match self {
            ImageFormat::Oci => "oci",
            ImageFormat::DockerArchive => "docker-archive",
        }
    }

    /// Parses [`ImageFormat::name`].
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for another name.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "oci" => Ok(ImageFormat::Oci),
            "docker-archive" | "docker" => Ok(ImageFormat::DockerArchive),
            other => Err(Error::InvalidArgument(format!(
                "image format {other:?}: expected oci or docker-archive"
            ))),
        }
    }
}

/// Where a file's bytes are in the source.
#[derive(Clone, Debug)]
pub struct Span {
    /// The file holding them.
    pub file: PathBuf,
    /// Their offset in it.
    pub offset: u64,
    /// Their length.
    pub len: u64,
}

impl Span {
    /// A reader of exactly these bytes.
    ///
    /// # Errors
    /// I/O errors opening or seeking.
    pub fn open(&self) -> Result<impl Read + use<>> {
        let mut f = File::open(&self.file).map_err(|e| Error::io(self.file.display().to_string(), e))?;
        f.seek(SeekFrom::Start(self.offset))
            .map_err(|e| Error::io(self.file.display().to_string(), e))?;
        Ok(f.take(self.len))
    }

    fn read_small(&self, what: &str) -> Result<Vec<u8>> {
        if self.len > MAX_JSON {
            return Err(bad(format!("{what} is {} bytes, more than {MAX_JSON}", self.len)));
        }
        let mut bytes = Vec::new();
        self.open()?
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io(self.file.display().to_string(), e))?;
        Ok(bytes)
    }
}

/// One path of the image.
#[derive(Clone, Debug)]
pub enum Item {
    /// A file kept byte for byte.
    File(Span),
    /// A layer blob: stored as a layer, file by file.
    Layer(Span),
    /// A symbolic link (docker archives link legacy layer paths to blobs).
    Symlink(Vec<u8>),
}

/// An image as read: its paths, relative to its root, `/`-separated.
#[derive(Clone, Debug)]
pub struct ImageSource {
    /// Which format it came in.
    pub format: ImageFormat,
    /// Every path kept, in order.
    pub items: BTreeMap<Vec<u8>, Item>,
    /// Expected `sha256:<hex>` of the stream as given, per layer path (OCI layouts).
    pub layer_digests: BTreeMap<Vec<u8>, String>,
    /// Files of the source that nothing refers to, left out.
    pub unreferenced: Vec<String>,
}

fn bad(detail: impl Into<String>) -> Error {
    Error::InvalidArgument(detail.into())
}

/// SHA-256 of what `r` yields, as `sha256:<hex>`, and its length.
///
/// # Errors
/// Read errors.
pub fn sha256_of(r: &mut dyn Read, what: &str) -> Result<(String, u64)> {
    let mut ctx = Context::new(&SHA256);
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf).map_err(|e| Error::io(what.to_string(), e))?;
        if n == 0 {
            break;
        }
        total += n as u64;
        ctx.update(buf.get(..n).unwrap_or_default());
    }
    Ok((format!("sha256:{}", hex::encode(ctx.finish().as_ref())), total))
}

/// Reads the image at `path`: a directory is an OCI layout, a file a docker archive.
///
/// # Errors
/// [`Error::InvalidArgument`] for anything malformed: a blob whose bytes do not match its
/// digest or size, a descriptor naming a missing blob, a path that leaves the archive.
pub fn read_image(path: &Path) -> Result<ImageSource> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path.display().to_string(), e))?;
    if meta.is_dir() {
        read_oci(path)
    } else {
        read_docker_archive(path)
    }
}

fn parse_json(bytes: &[u8], what: &str) -> Result<Value> {
    serde_json::from_slice(bytes).map_err(|e| bad(format!("{what} is not JSON: {e}")))
}

/// A descriptor's digest as a blob path, checked.
fn blob_path(digest: &str) -> Result<String> {
    let hex = digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .ok_or_else(|| bad(format!("digest {digest:?} is not sha256:<64 lowercase hex digits>")))?;
    Ok(format!("blobs/sha256/{hex}"))
}

fn is_index(media_type: &str) -> bool {
    media_type == "application/vnd.oci.image.index.v1+json"
        || media_type == "application/vnd.docker.distribution.manifest.list.v2+json"
}

fn is_manifest(media_type: &str) -> bool {
    media_type == "application/vnd.oci.image.manifest.v1+json"
        || media_type == "application/vnd.docker.distribution.manifest.v2+json"
}

struct OciReader<'a> {
    root: &'a Path,
    source: ImageSource,
}

fn read_oci(root: &Path) -> Result<ImageSource> {
    let layout = root.join("oci-layout");
    if !layout.is_file() {
        return Err(bad(format!(
            "{} is a directory without an oci-layout file: not an OCI image layout",
            root.display()
        )));
    }
    let mut r = OciReader {
        root,
        source: ImageSource {
            format: ImageFormat::Oci,
            items: BTreeMap::new(),
            layer_digests: BTreeMap::new(),
            unreferenced: Vec::new(),
        },
    };
    let layout_bytes = r.add_file("oci-layout")?.read_small("oci-layout")?;
    parse_json(&layout_bytes, "oci-layout")?;
    let index = r.add_file("index.json")?.read_small("index.json")?;
    r.visit_index(&parse_json(&index, "index.json")?, "index.json", 0)?;
    r.source.unreferenced = unreferenced_blobs(root, &r.source.items)?;
    Ok(r.source)
}

impl OciReader<'_> {
    fn span_of(&self, rel: &str) -> Result<Span> {
        let file = self.root.join(rel);
        let meta = std::fs::symlink_metadata(&file).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => bad(format!("the image names {rel}, which is missing")),
            _ => Error::io(file.display().to_string(), e),
        })?;
        if !meta.is_file() {
            return Err(bad(format!("{rel} is not a regular file")));
        }
        Ok(Span {
            file,
            offset: 0,
            len: meta.len(),
        })
    }

    fn add_file(&mut self, rel: &str) -> Result<Span> {
        let span = self.span_of(rel)?;
        self.source
            .items
            .insert(rel.as_bytes().to_vec(), Item::File(span.clone()));
        Ok(span)
    }

    /// Checks a descriptor's blob (size and digest) and returns its path and span.
    fn blob(&self, desc: &Value, whose: &str) -> Result<(String, Span, String)> {
        let digest = desc.get("digest").and_then(Value::as_str).unwrap_or_default();
        let rel = blob_path(digest).map_err(|e| bad(format!("{whose}: {e}")))?;
        let span = self
            .span_of(&rel)
            .map_err(|e| bad(format!("{whose} names a missing or unreadable blob {digest}: {e}")))?;
        if let Some(size) = desc.get("size").and_then(Value::as_u64)
            && size != span.len
        {
            return Err(bad(format!(
                "{whose}: blob {digest} is {} bytes, its descriptor says {size}",
                span.len
            )));
        }
        let (actual, _) = sha256_of(&mut span.open()?, &rel)?;
        if actual != digest {
            return Err(bad(format!(
                "blob {rel} does not match its digest: its bytes hash to {actual}"
            )));
        }
        Ok((rel, span, digest.to_string()))
    }

    fn visit_index(&mut self, index: &Value, whose: &str, depth: u32) -> Result<()> {
        if depth > 8 {
            return Err(bad(format!("{whose}: indexes nested more than 8 deep")));
        }
        let manifests = index
            .get("manifests")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for desc in &manifests {
            let media = desc.get("mediaType").and_then(Value::as_str).unwrap_or_default();
            let (rel, span, _) = self.blob(desc, whose)?;
            self.source
                .items
                .insert(rel.as_bytes().to_vec(), Item::File(span.clone()));
            if is_index(media) {
                let body = parse_json(&span.read_small(&rel)?, &rel)?;
                self.visit_index(&body, &rel, depth + 1)?;
            } else if is_manifest(media) {
                let body = parse_json(&span.read_small(&rel)?, &rel)?;
                self.visit_manifest(&body, &rel)?;
            }
        }
        Ok(())
    }

    fn visit_manifest(&mut self, manifest: &Value, whose: &str) -> Result<()> {
        let config = manifest
            .get("config")
            .ok_or_else(|| bad(format!("manifest {whose} has no config")))?;
        let (rel, span, _) = self.blob(config, whose)?;
        self.source.items.insert(rel.into_bytes(), Item::File(span));
        let layers = manifest
            .get("layers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for desc in &layers {
            let (rel, span, digest) = self.blob(desc, whose)?;
            let key = rel.into_bytes();
            self.source.layer_digests.insert(key.clone(), digest);
            self.source.items.insert(key, Item::Layer(span));
        }
        Ok(())
    }
}

fn unreferenced_blobs(root: &Path, items: &BTreeMap<Vec<u8>, Item>) -> Result<Vec<String>> {
    let dir = root.join("blobs/sha256");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut left = Vec::new();
    for e in entries {
        let e = e.map_err(|e| Error::io(dir.display().to_string(), e))?;
        let rel = format!("blobs/sha256/{}", e.file_name().to_string_lossy());
        if !items.contains_key(rel.as_bytes()) {
            left.push(rel);
        }
    }
    left.sort();
    Ok(left)
}

/// One member of an archive's outer tar.
struct Member {
    kind: TarKind,
    link: Vec<u8>,
    span: Span,
}

fn read_docker_archive(path: &Path) -> Result<ImageSource> {
    let members = list_members(path)?;
    let manifest = members
        .get(b"manifest.json".as_slice())
        .ok_or_else(|| bad(format!("{} has no manifest.json: not a docker archive", path.display())))?;
    let body = parse_json(&manifest.span.read_small("manifest.json")?, "manifest.json")?;
    let images = body
        .as_array()
        .ok_or_else(|| bad("manifest.json is not a list of images"))?;
    let mut layers = BTreeSet::new();
    let mut configs = BTreeSet::new();
    for image in images {
        let config = image.get("Config").and_then(Value::as_str).unwrap_or_default();
        configs.insert(resolve(&members, config.as_bytes())?);
        for layer in image.get("Layers").and_then(Value::as_array).into_iter().flatten() {
            let named = layer.as_str().unwrap_or_default();
            layers.insert(resolve(&members, named.as_bytes())?);
        }
    }
    let mut items = BTreeMap::new();
    for (name, m) in members {
        let item = match m.kind {
            TarKind::Symlink => Item::Symlink(m.link),
            _ if layers.contains(&name) => Item::Layer(m.span),
            _ => Item::File(m.span),
        };
        items.insert(name, item);
    }
    Ok(ImageSource {
        format: ImageFormat::DockerArchive,
        items,
        layer_digests: BTreeMap::new(),
        unreferenced: Vec::new(),
    })
}

/// The regular member a manifest path names, following symbolic links within the archive.
fn resolve(members: &BTreeMap<Vec<u8>, Member>, name: &[u8]) -> Result<Vec<u8>> {
    let mut at = name.to_vec();
    for _ in 0..16 {
        let shown = String::from_utf8_lossy(&at).into_owned();
        let m = members
            .get(&at)
            .ok_or_else(|| bad(format!("manifest.json names {shown:?}, which the archive lacks")))?;
        match m.kind {
            TarKind::Symlink => at = join_link(&at, &m.link)?,
            TarKind::File => return Ok(at),
            _ => return Err(bad(format!("manifest.json names {shown:?}, which is not a file"))),
        }
    }
    Err(bad(format!(
        "manifest.json names {:?} through too many links",
        String::from_utf8_lossy(name)
    )))
}

/// The archive path a relative link at `from` points to; refuses one that leaves the root.
fn join_link(from: &[u8], target: &[u8]) -> Result<Vec<u8>> {
    let shown = || String::from_utf8_lossy(target).into_owned();
    if target.first() == Some(&b'/') {
        return Err(bad(format!("link target {:?} is absolute", shown())));
    }
    let mut parts: Vec<&[u8]> = from.split(|&b| b == b'/').collect();
    parts.pop();
    for c in target.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                if parts.pop().is_none() {
                    return Err(bad(format!("link target {:?} leaves the archive", shown())));
                }
            }
            c => parts.push(c),
        }
    }
    Ok(parts.join(&b'/'))
}

/// Refuses a path that is absolute, empty, or has an empty, `.` or `..` component.
///
/// # Errors
/// [`Error::InvalidArgument`] naming the path.
pub fn check_path(path: &[u8]) -> Result<()> {
    let plain = !path.is_empty()
        && path
            .split(|&b| b == b'/')
            .all(|c| !c.is_empty() && c != b"." && c != b".." && !c.contains(&0));
    if plain {
        Ok(())
    } else {
        Err(bad(format!(
            "image path {:?} is not a plain relative path",
            String::from_utf8_lossy(path)
        )))
    }
}

/// Refuses a link target that leaves the image.
///
/// # Errors
/// [`Error::InvalidArgument`] naming the target.
pub fn check_link(path: &[u8], target: &[u8]) -> Result<()> {
    join_link(path, target).map(|_| ())
}

/// `sha256:HEX` when `path` is `blobs/sha256/HEX` (an OCI blob names its digest).
pub fn named_digest(path: &[u8]) -> Option<String> {
    let hex = std::str::from_utf8(path.strip_prefix(b"blobs/sha256/")?).ok()?;
    blob_path(&format!("sha256:{hex}"))
        .ok()
        .map(|_| format!("sha256:{hex}"))
}

/// A member path made relative and checked: no absolute paths, no `..`.
fn member_path(raw: &[u8]) -> Result<Option<Vec<u8>>> {
    let shown = || String::from_utf8_lossy(raw).into_owned();
    if raw.first() == Some(&b'/') {
        return Err(bad(format!("archive member {:?} has an absolute path", shown())));
    }
    let parts: Vec<&[u8]> = raw
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .collect();
    if parts.contains(&b"..".as_slice()) {
        return Err(bad(format!("archive member {:?} leaves the archive", shown())));
    }
    Ok((!parts.is_empty()).then(|| parts.join(&b'/')))
}

fn list_members(path: &Path) -> Result<BTreeMap<Vec<u8>, Member>> {
    let shown = path.display().to_string();
    let mut f = File::open(path).map_err(|e| Error::io(shown.clone(), e))?;
    let total = f.metadata().map_err(|e| Error::io(shown.clone(), e))?.len();
    let mut members = BTreeMap::new();
    let mut offset = 0u64;
    let mut long_name: Option<Vec<u8>> = None;
    let mut long_link: Option<Vec<u8>> = None;
    while offset + BLOCK as u64 <= total {
        let mut block = [0u8; BLOCK];
        f.seek(SeekFrom::Start(offset))
            .map_err(|e| Error::io(shown.clone(), e))?;
        f.read_exact(&mut block).map_err(|e| Error::io(shown.clone(), e))?;
        if tarhdr::is_zero_block(&block) {
            break;
        }
        let header =
            tarhdr::parse_header(&block).map_err(|e| bad(format!("{shown}: malformed tar at byte {offset}: {e}")))?;
        let data = offset + BLOCK as u64;
        if data + header.size > total {
            return Err(bad(format!("{shown}: the archive ends inside member at byte {offset}")));
        }
        offset = data + header.size + tarhdr::padding(header.size);
        let span = Span {
            file: path.to_path_buf(),
            offset: data,
            len: header.size,
        };
        match header.kind {
            TarKind::GnuLongName | TarKind::GnuLongLink | TarKind::PaxLocal => {
                let bytes = span.read_small("a tar extended header")?;
                note_long(header.kind, &bytes, &mut long_name, &mut long_link)?;
                continue;
            }
            TarKind::PaxGlobal => continue,
            _ => {}
        }
        let name = long_name.take().unwrap_or(header.name);
        let link = long_link.take().unwrap_or(header.link);
        let Some(rel) = member_path(&name)? else { continue };
        match header.kind {
            TarKind::Dir => continue,
            TarKind::File => {}
            TarKind::Symlink => {
                join_link(&rel, &link)?;
            }
            other => {
                return Err(bad(format!(
                    "archive member {:?} is a {other:?}, which an image archive does not hold",
                    String::from_utf8_lossy(&rel)
                )));
            }
        }
        members.insert(
            rel,
            Member {
                kind: header.kind,
                link,
                span,
            },
        );
    }
    Ok(members)
}

fn note_long(kind: TarKind, bytes: &[u8], name: &mut Option<Vec<u8>>, link: &mut Option<Vec<u8>>) -> Result<()> {
    let trimmed = |d: &[u8]| d.split(|&b| b == 0).next().unwrap_or_default().to_vec();
    match kind {
        TarKind::GnuLongName => *name = Some(trimmed(bytes)),
        TarKind::GnuLongLink => *link = Some(trimmed(bytes)),
        _ => {
            for (k, v) in tarhdr::parse_pax(bytes).map_err(|e| bad(format!("a PAX header: {e}")))? {
                match k.as_slice() {
                    b"path" => *name = Some(v),
                    b"linkpath" => *link = Some(v),
                    _ => {}
                }
            }
        }
    }
    Ok(())
}

/// Unpacks an image archive Amber wrote (regular files and symbolic links, paths confined
/// to the root) into the empty directory `dest`; then checks that every
/// `blobs/sha256/HEX` file hashes to HEX. Returns the files written.
///
/// # Errors
/// [`Error::InvalidArgument`] for a malformed archive or a blob that does not match its
/// name; I/O errors.
pub fn unpack_archive(archive: &Path, dest: &Path) -> Result<u64> {
    let members = list_members(archive)?;
    let mut files = 0u64;
    for (name, m) in &members {
        let rel = std::str::from_utf8(name).map_err(|_| bad("an archive path that is not UTF-8"))?;
        let target = dest.join(rel);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent.display().to_string(), e))?;
        }
        if m.kind == TarKind::Symlink {
            let link = String::from_utf8_lossy(&m.link).into_owned();
            std::os::unix::fs::symlink(link, &target).map_err(|e| Error::io(target.display().to_string(), e))?;
            continue;
        }
        let mut out = File::create(&target).map_err(|e| Error::io(target.display().to_string(), e))?;
        std::io::copy(&mut m.span.open()?, &mut out).map_err(|e| Error::io(target.display().to_string(), e))?;
        out.sync_all().map_err(|e| Error::io(target.display().to_string(), e))?;
        files += 1;
        if let Some(expected) = named_digest(name) {
            let (actual, _) = sha256_of(
                &mut File::open(&target).map_err(|e| Error::io(rel.to_string(), e))?,
                rel,
            )?;
            if actual != expected {
                return Err(Error::Corrupt {
                    kind: "image blob",
                    id: rel.to_string(),
                    detail: format!("its bytes hash to {actual}"),
                });
            }
        }
    }
    Ok(files)
}

/// True when the archive has a member at `name`.
///
/// # Errors
/// A malformed archive; I/O errors.
pub fn archive_has(archive: &Path, name: &[u8]) -> Result<bool> {
    Ok(list_members(archive)?.contains_key(name))
}
