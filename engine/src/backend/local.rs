//! A local directory: write to a temporary file, fsync, then link (create-only) or
//! rename (overwrite) into place, then fsync the directory.
//!
//! A directory has one storage class, `STANDARD`. An object's version tag is its file's
//! identity (inode, change time, size): every write makes a new file, so a tag names one
//! content. Compare-and-swap holds an advisory `flock` on `tmp/cas.lock` while it compares
//! and renames; the kernel drops the lock when its holder dies, so a crash leaves none.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use std::os::unix::fs::{MetadataExt, OpenOptionsExt};

use super::{
    Backend, BackendError, CasOutcome, ListPage, ObjectInfo, PendingUpload, PutMode, PutOutcome, RestoreStatus,
    RetrievalTier, StorageClass, page_of, validate_key,
};
use crate::crypto::random_array;

/// Objects as files below a root directory.
#[derive(Debug, Clone)]
pub struct LocalBackend {
    root: PathBuf,
}

/// Directory for temporary files, ignored by listings.
const TMP_DIR: &str = "tmp";

impl LocalBackend {
    /// A backend rooted at `root` (which must exist).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalBackend { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// An I/O error naming the file (root joined with the key), so a message says where.
    fn io_err(&self, key: &str, source: std::io::Error) -> BackendError {
        io_err(&self.root.join(key).display().to_string(), source)
    }

    fn path(&self, key: &str) -> Result<PathBuf, BackendError> {
        validate_key(key)?;
        Ok(self.root.join(key))
    }

    fn temp_path(&self) -> Result<PathBuf, BackendError> {
        let name: [u8; 12] = random_array().map_err(|_| self.io_err("tmp", std::io::Error::other("no randomness")))?;
        Ok(self.root.join(TMP_DIR).join(format!("{}.tmp", hex::encode(name))))
    }

    fn write_temp(&self, key: &str, bytes: &[u8]) -> Result<PathBuf, BackendError> {
        let tmp = self.temp_path()?;
        if let Some(dir) = tmp.parent() {
            fs::create_dir_all(dir).map_err(|e| self.io_err(key, e))?;
        }
        let write = || -> std::io::Result<()> {
            let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(self.io_err(key, e));
        }
        Ok(tmp)
    }
}

fn io_err(key: &str, source: std::io::Error) -> BackendError {
    BackendError::Io {
        key: key.to_string(),
        source,
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir` (and missing parents up to `root`) durably: each new directory's parent
/// is fsynced, so a pack reported durable cannot vanish with a directory entry lost in a
/// power cut.
fn ensure_dir(root: &Path, dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| p.starts_with(root) && *p != dir) {
        ensure_dir(root, parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e),
    }
    match dir.parent() {
        Some(parent) => sync_dir(parent),
        None => Ok(()),
    }
}

impl Backend for LocalBackend {
    fn put(&self, key: &str, bytes: &[u8], mode: PutMode) -> Result<PutOutcome, BackendError> {
        let path = self.path(key)?;
        if mode == PutMode::CreateOnly && path.exists() {
            return Ok(PutOutcome::AlreadyExisted);
        }
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        ensure_dir(&self.root, &dir).map_err(|e| self.io_err(key, e))?;
        let tmp = self.write_temp(key, bytes)?;
        let placed = match mode {
            // link(2) fails if the target exists: an atomic create-only.
            PutMode::CreateOnly => fs::hard_link(&tmp, &path),
            PutMode::Overwrite => fs::rename(&tmp, &path),
        };
        let _ = fs::remove_file(&tmp);
        match placed {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(PutOutcome::AlreadyExisted),
            Err(e) => return Err(self.io_err(key, e)),
        }
        sync_dir(&dir).map_err(|e| self.io_err(key, e))?;
        Ok(PutOutcome::Created)
    }

    fn get(&self, key: &str) -> Result<Vec<u8>, BackendError> {
        let path = self.path(key)?;
        fs::read(&path).map_err(|e| map_missing(self, key, e))
    }

    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>, BackendError> {
        let path = self.path(key)?;
        let mut f = File::open(&path).map_err(|e| map_missing(self, key, e))?;
        let size = f.metadata().map_err(|e| self.io_err(key, e))?.len();
        if offset.checked_add(len).is_none_or(|end| end > size) {
            return Err(BackendError::OutOfRange {
                key: key.into(),
                offset,
                len,
            });
        }
        let len = usize::try_from(len).map_err(|_| BackendError::OutOfRange {
            key: key.into(),
            offset,
            len,
        })?;
        let mut buf = vec![0u8; len];
        f.seek(SeekFrom::Start(offset)).map_err(|e| self.io_err(key, e))?;
        f.read_exact(&mut buf).map_err(|e| self.io_err(key, e))?;
        Ok(buf)
    }

    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn stat(&self, key: &str) -> Result<Option<ObjectInfo>, BackendError> {
        let path = self.path(key)?;
        match fs::metadata(&path) {
            Ok(m) if m.is_file() => Ok(Some(info_of(key.to_string(), &m))),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io_err(key, e)),
        }
    }

    fn list_page(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<ListPage, BackendError> {
        let mut out = Vec::new();
        // Walk the directory that contains the prefix, then filter.
        let base = match prefix.rfind('/') {
            Some(i) => prefix.get(..i).unwrap_or(""),
            None => "",
        };
        walk(&self.root, base, &mut out).map_err(|e| self.io_err(prefix, e))?;
        out.retain(|o| o.key.starts_with(prefix) && !o.key.starts_with("tmp/"));
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(page_of(out, after, limit))
    }

    fn put_if_match(&self, key: &str, bytes: &[u8], etag: &str) -> Result<CasOutcome, BackendError> {
        let path = self.path(key)?;
        let lock = self.cas_lock(key)?;
        let current = self.stat(key)?.and_then(|o| o.etag);
        if current.as_deref() != Some(etag) {
            drop(lock);
            return Ok(CasOutcome::Conflict);
        }
        let tmp = self.write_temp(key, bytes)?;
        let placed = fs::rename(&tmp, &path);
        if placed.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        placed.map_err(|e| self.io_err(key, e))?;
        let dir = path.parent().unwrap_or(&self.root);
        sync_dir(dir).map_err(|e| self.io_err(key, e))?;
        let tag = self.stat(key)?.and_then(|o| o.etag);
        drop(lock);
        Ok(CasOutcome::Replaced(tag))
    }

    fn set_storage_class(&self, key: &str, class: &StorageClass) -> Result<(), BackendError> {
        if self.stat(key)?.is_none() {
            return Err(BackendError::NotFound { key: key.into() });
        }
        if *class == StorageClass::Standard {
            return Ok(());
        }
        Err(BackendError::Unsupported {
            store: format!("the local directory {}", self.root.display()),
            what: format!("keep objects in the storage class {class} (a directory has only STANDARD)"),
        })
    }

    fn request_restore(&self, key: &str, _days: u32, _tier: RetrievalTier) -> Result<(), BackendError> {
        self.restore_status(key).map(|_| ())
    }

    fn restore_status(&self, key: &str) -> Result<RestoreStatus, BackendError> {
        match self.stat(key)? {
            Some(_) => Ok(RestoreStatus::Readable),
            None => Err(BackendError::NotFound { key: key.into() }),
        }
    }

    fn pending_uploads(&self, _prefix: &str) -> Result<Vec<PendingUpload>, BackendError> {
        Ok(Vec::new())
    }

    fn abort_upload(&self, _upload: &PendingUpload) -> Result<(), BackendError> {
        Ok(())
    }

    fn delete(&self, key: &str) -> Result<(), BackendError> {
        let path = self.path(key)?;
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(self.io_err(key, e)),
        }
        if let Some(dir) = path.parent() {
            sync_dir(dir).map_err(|e| self.io_err(key, e))?;
        }
        Ok(())
    }
}

/// What a file's metadata says of its object.
fn info_of(key: String, m: &fs::Metadata) -> ObjectInfo {
    ObjectInfo {
        key,
        size: m.len(),
        modified: Some(m.mtime()),
        etag: Some(format!(
            "{:x}-{:x}.{:x}-{:x}",
            m.ino(),
            m.ctime(),
            m.ctime_nsec(),
            m.len()
        )),
        class: StorageClass::Standard,
    }
}

impl LocalBackend {
    /// Holds the compare-and-swap lock until the returned file is dropped.
    fn cas_lock(&self, key: &str) -> Result<nix::fcntl::Flock<File>, BackendError> {
        let dir = self.root.join(TMP_DIR);
        fs::create_dir_all(&dir).map_err(|e| self.io_err(key, e))?;
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("cas.lock"))
            .map_err(|e| self.io_err(key, e))?;
        nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| self.io_err(key, std::io::Error::from(e)))
    }
}

fn map_missing(backend: &LocalBackend, key: &str, e: std::io::Error) -> BackendError {
    if e.kind() == ErrorKind::NotFound {
        BackendError::NotFound { key: key.into() }
    } else {
        backend.io_err(key, e)
    }
}

fn walk(root: &Path, rel: &str, out: &mut Vec<ObjectInfo>) -> std::io::Result<()> {
    let dir = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let key = if rel.is_empty() { name } else { format!("{rel}/{name}") };
        let ft = entry.file_type()?;
        if ft.is_dir() {
            if validate_key(&key).is_ok() {
                walk(root, &key, out)?;
            }
        } else if ft.is_file() && validate_key(&key).is_ok() {
            out.push(info_of(key, &entry.metadata()?));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn conformance() {
        let dir = tempfile::tempdir().unwrap();
        super::super::conformance::run(&super::LocalBackend::new(dir.path())).unwrap();
        assert!(
            !dir.path().join("tmp").read_dir().unwrap().any(|e| e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".tmp")),
            "no temp files left"
        );
    }
}
