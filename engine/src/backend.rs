//! The store: a flat namespace of immutable objects, behind a small trait.
//!
//! Object keys are `/`-separated ASCII paths such as `data/ab/ab12…`. Every method is
//! synchronous and may block; callers keep it off async executors.

pub mod conformance;
pub mod fault;
pub mod local;
pub mod memory;
pub mod prefix;
pub mod s3;

use std::sync::Arc;

/// How a put treats an existing object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutMode {
    /// Atomically create; if the key exists, leave it untouched and report
    /// [`PutOutcome::AlreadyExisted`].
    CreateOnly,
    /// Atomically replace (only for objects that are not content-addressed, such as
    /// key slots being rewritten; never for packs or snapshots).
    Overwrite,
}

/// What a put did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutOutcome {
    /// The object was written and is durable.
    Created,
    /// A create-only put found the key taken and wrote nothing.
    AlreadyExisted,
}

/// One stored object, as a listing or a stat reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Its key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last written, in seconds since the epoch (`None` when the store does
    /// not say).
    pub modified: Option<i64>,
    /// The store's version tag of these bytes (an S3 ETag, a local file's identity): what
    /// [`Backend::put_if_match`] compares. `None` when the store does not say.
    pub etag: Option<String>,
    /// Its storage class.
    pub class: StorageClass,
}

/// An upload in parts that was begun and neither completed nor aborted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingUpload {
    /// The key it would have written.
    pub key: String,
    /// The store's id of the upload.
    pub id: String,
    /// When it was begun, in seconds since the epoch, the store's clock (`None` when the
    /// store does not say).
    pub started: Option<i64>,
}

impl ObjectInfo {
    /// An object of the standard class with nothing else known.
    pub fn new(key: impl Into<String>, size: u64) -> Self {
        ObjectInfo {
            key: key.into(),
            size,
            modified: None,
            etag: None,
            class: StorageClass::Standard,
        }
    }
}

/// One page of a listing ([`Backend::list_page`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListPage {
    /// Objects in key order.
    pub objects: Vec<ObjectInfo>,
    /// Pass this as `after` for the next page; `None`: this was the last page.
    pub next_after: Option<String>,
}

/// What a compare-and-swap put did ([`Backend::put_if_match`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CasOutcome {
    /// The object held the expected version and now holds the new bytes, whose version
    /// tag is given when the store returns one.
    Replaced(Option<String>),
    /// The object changed (or vanished) since it was read: nothing was written. Read it
    /// again, merge, and retry.
    Conflict,
}

/// A storage class, named as S3 names it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StorageClass {
    /// `STANDARD`: hot; every local and memory object.
    Standard,
    /// `STANDARD_IA`: infrequent access, read at once, billed 30 days at least.
    StandardIa,
    /// `ONEZONE_IA`.
    OneZoneIa,
    /// `INTELLIGENT_TIERING`.
    IntelligentTiering,
    /// `GLACIER_IR`: instant retrieval archive, read at once, billed 90 days at least.
    GlacierIr,
    /// `GLACIER` (Flexible Retrieval): must be restored before it is read.
    Glacier,
    /// `DEEP_ARCHIVE`: must be restored (hours) before it is read, billed 180 days at least.
    DeepArchive,
    /// Any other name a store reports.
    Other(String),
}

impl StorageClass {
    /// Every class Amber knows, coldest last.
    pub const KNOWN: [StorageClass; 7] = [
        StorageClass::Standard,
        StorageClass::IntelligentTiering,
        StorageClass::StandardIa,
        StorageClass::OneZoneIa,
        StorageClass::GlacierIr,
        StorageClass::Glacier,
        StorageClass::DeepArchive,
    ];

    /// The S3 name.
    pub fn as_str(&self) -> &str {
        match self {
            StorageClass::Standard => "STANDARD",
            StorageClass::StandardIa => "STANDARD_IA",
            StorageClass::OneZoneIa => "ONEZONE_IA",
            StorageClass::IntelligentTiering => "INTELLIGENT_TIERING",
            StorageClass::GlacierIr => "GLACIER_IR",
            StorageClass::Glacier => "GLACIER",
            StorageClass::DeepArchive => "DEEP_ARCHIVE",
            StorageClass::Other(name) => name,
        }
    }

    /// The class of an S3 name (case-insensitive); an empty name is `STANDARD`, as S3
    /// leaves the class out of listings of standard objects.
    pub fn parse(name: &str) -> StorageClass {
        let upper = name.trim().to_ascii_uppercase();
        if upper.is_empty() {
            return StorageClass::Standard;
        }
        StorageClass::KNOWN
            .into_iter()
            .find(|c| c.as_str() == upper)
            .unwrap_or(StorageClass::Other(upper))
    }

    /// Whether an object of this class must be restored before it can be read.
    pub fn is_archive(&self) -> bool {
        matches!(self, StorageClass::Glacier | StorageClass::DeepArchive)
    }

    /// The minimum storage duration the provider bills, in days (AWS's published terms).
    pub fn minimum_days(&self) -> u32 {
        match self {
            StorageClass::StandardIa | StorageClass::OneZoneIa => 30,
            StorageClass::GlacierIr | StorageClass::Glacier => 90,
            StorageClass::DeepArchive => 180,
            StorageClass::Standard | StorageClass::IntelligentTiering | StorageClass::Other(_) => 0,
        }
    }
}

impl std::fmt::Display for StorageClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How fast an archived object is brought back ([`Backend::request_restore`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetrievalTier {
    /// Hours (3–5 from GLACIER, within 12 from DEEP_ARCHIVE).
    Standard,
    /// Cheapest and slowest (5–12 hours from GLACIER, within 48 from DEEP_ARCHIVE).
    Bulk,
}

impl RetrievalTier {
    /// The S3 name.
    pub fn as_str(self) -> &'static str {
        match self {
            RetrievalTier::Standard => "Standard",
            RetrievalTier::Bulk => "Bulk",
        }
    }
}

/// Whether an object can be read now ([`Backend::restore_status`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestoreStatus {
    /// Readable: not archived, or a restored copy is available.
    Readable,
    /// Archived and no restore was asked for.
    Archived,
    /// Archived and a restore is under way.
    InProgress,
}

/// Errors from a backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// No object under that key.
    #[error("object {key} not found in the store")]
    NotFound {
        /// The key.
        key: String,
    },
    /// A ranged read reached past the object's end.
    #[error("object {key}: range {offset}+{len} lies beyond its end")]
    OutOfRange {
        /// The key.
        key: String,
        /// Offset asked.
        offset: u64,
        /// Length asked.
        len: u64,
    },
    /// The key is not a valid object key.
    #[error("invalid object key {0:?}")]
    InvalidKey(String),
    /// An I/O error on a key.
    #[error("store I/O on {key}: {source}{}", io_hint(source))]
    Io {
        /// The key.
        key: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A fault injected by a test backend.
    #[error("injected fault on {0}")]
    Injected(String),
    /// The object is in an archive storage class and must be restored first.
    #[error(
        "object {key} is in the archive class {class}: it must be restored before it can be read (see `amber restore --warm-up`)"
    )]
    Archived {
        /// The key.
        key: String,
        /// Its class.
        class: StorageClass,
    },
    /// The store refused or failed a request after its retries.
    #[error("store request {op} on {key} failed{}: {code}: {message}", status.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
    Remote {
        /// What was asked (`PutObject`, `GetObject`, …).
        op: &'static str,
        /// The key.
        key: String,
        /// The HTTP status, when there was a response.
        status: Option<u16>,
        /// The store's error code (`AccessDenied`, `SlowDown`, …), or the transport error.
        code: String,
        /// The store's message.
        message: String,
    },
    /// The store cannot do what was asked.
    #[error("{store} cannot {what}")]
    Unsupported {
        /// The store.
        store: String,
        /// What it cannot do.
        what: String,
    },
}

/// What to tell a user about an I/O error beyond the OS's words.
pub fn io_hint(e: &std::io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::ENOSPC) => {
            " (ENOSPC: the file system is full; free space and run the command again: nothing half-written was committed)"
        }
        Some(libc::EDQUOT) => " (EDQUOT: the disk quota is exhausted; nothing half-written was committed)",
        Some(libc::EROFS) => " (EROFS: the file system is read-only)",
        _ => "",
    }
}

/// A store of immutable objects.
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// Writes an object. When it returns `Created`, the object is durable and complete;
    /// after a crash the key either holds the whole object or nothing.
    ///
    /// # Errors
    /// [`BackendError`] on I/O failure.
    fn put(&self, key: &str, bytes: &[u8], mode: PutMode) -> Result<PutOutcome, BackendError>;

    /// Reads a whole object.
    ///
    /// # Errors
    /// [`BackendError::NotFound`] or I/O.
    fn get(&self, key: &str) -> Result<Vec<u8>, BackendError>;

    /// Reads `len` bytes at `offset`; fails rather than returning fewer.
    ///
    /// # Errors
    /// [`BackendError::OutOfRange`], [`BackendError::NotFound`] or I/O.
    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>, BackendError>;

    /// Several ranges of one object, each of `len` bytes at `offset`, in the order given.
    /// A store with costly requests reads neighbouring ranges with one request.
    ///
    /// # Errors
    /// As [`Backend::get_range`].
    fn get_ranges(&self, key: &str, ranges: &[(u64, u64)]) -> Result<Vec<Vec<u8>>, BackendError> {
        ranges
            .iter()
            .map(|&(offset, len)| self.get_range(key, offset, len))
            .collect()
    }

    /// Up to `len` bytes at `offset`: fewer when the object ends first (at least one when
    /// `offset` is inside it).
    ///
    /// # Errors
    /// [`BackendError::OutOfRange`] when `offset` is at or past the end; as [`Backend::get_range`].
    fn get_range_upto(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>, BackendError> {
        let size = self
            .stat(key)?
            .ok_or_else(|| BackendError::NotFound { key: key.into() })?
            .size;
        if offset >= size {
            return Err(BackendError::OutOfRange {
                key: key.into(),
                offset,
                len,
            });
        }
        self.get_range(key, offset, len.min(size - offset))
    }

    /// Whether each request is costly (a network store): reads then fetch larger windows.
    fn prefers_large_reads(&self) -> bool {
        false
    }

    /// What the store knows of an object, or `None` when absent.
    ///
    /// # Errors
    /// I/O.
    fn stat(&self, key: &str) -> Result<Option<ObjectInfo>, BackendError>;

    /// The object's size, or `None` when absent.
    ///
    /// # Errors
    /// I/O.
    fn head(&self, key: &str) -> Result<Option<u64>, BackendError> {
        Ok(self.stat(key)?.map(|o| o.size))
    }

    /// Up to `limit` objects whose key starts with `prefix` and sorts after `after`, in
    /// key order.
    ///
    /// # Errors
    /// I/O.
    fn list_page(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<ListPage, BackendError>;

    /// Every object whose key starts with `prefix`, in key order, page by page.
    ///
    /// # Errors
    /// I/O.
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, BackendError> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.list_page(prefix, after.as_deref(), LIST_PAGE)?;
            out.extend(page.objects);
            match page.next_after {
                Some(next) => after = Some(next),
                None => return Ok(out),
            }
        }
    }

    /// Replaces an object only if it still holds the version `etag` (compare and swap).
    ///
    /// # Errors
    /// I/O.
    fn put_if_match(&self, key: &str, bytes: &[u8], etag: &str) -> Result<CasOutcome, BackendError>;

    /// Moves an object to another storage class, keeping its bytes.
    ///
    /// # Errors
    /// [`BackendError::Unsupported`] on a store without that class; I/O.
    fn set_storage_class(&self, key: &str, class: &StorageClass) -> Result<(), BackendError>;

    /// Asks for a readable copy of an archived object for `days` days.
    ///
    /// # Errors
    /// I/O.
    fn request_restore(&self, key: &str, days: u32, tier: RetrievalTier) -> Result<(), BackendError>;

    /// Whether the object can be read now.
    ///
    /// # Errors
    /// [`BackendError::NotFound`]; I/O.
    fn restore_status(&self, key: &str) -> Result<RestoreStatus, BackendError>;

    /// Deletes an object; deleting an absent key is not an error (idempotent).
    ///
    /// # Errors
    /// I/O.
    fn delete(&self, key: &str) -> Result<(), BackendError>;

    /// Uploads in parts under `prefix` that were begun and neither completed nor aborted
    /// (a writer killed mid-upload leaves one, whose parts the store keeps and bills).
    /// A store that writes objects whole has none.
    ///
    /// # Errors
    /// I/O.
    fn pending_uploads(&self, prefix: &str) -> Result<Vec<PendingUpload>, BackendError>;

    /// Aborts a pending upload, freeing its parts; one already gone is not an error.
    ///
    /// # Errors
    /// I/O.
    fn abort_upload(&self, upload: &PendingUpload) -> Result<(), BackendError>;

    /// Where the store is, for messages (a directory, a URL).
    fn describe(&self) -> String {
        format!("{self:?}")
    }
}

/// A shared backend.
pub type DynBackend = Arc<dyn Backend>;

/// Objects per listing page (S3's own maximum).
pub const LIST_PAGE: usize = 1000;

/// The page of `sorted` (objects in key order, all with the prefix) after `after`: the
/// paging of backends that hold or walk a whole listing.
pub fn page_of(sorted: Vec<ObjectInfo>, after: Option<&str>, limit: usize) -> ListPage {
    let mut objects: Vec<ObjectInfo> = sorted
        .into_iter()
        .filter(|o| after.is_none_or(|a| o.key.as_str() > a))
        .take(limit.saturating_add(1))
        .collect();
    let more = objects.len() > limit;
    objects.truncate(limit);
    let next_after = if more {
        objects.last().map(|o| o.key.clone())
    } else {
        None
    };
    ListPage { objects, next_after }
}

/// Checks that a key is a relative `/`-separated path of safe ASCII components.
///
/// # Errors
/// [`BackendError::InvalidKey`].
pub fn validate_key(key: &str) -> Result<(), BackendError> {
    let ok = !key.is_empty()
        && key.split('/').all(|c| {
            !c.is_empty()
                && c != "."
                && c != ".."
                && c.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        });
    if ok {
        Ok(())
    } else {
        Err(BackendError::InvalidKey(key.to_string()))
    }
}

/// Checks that `store` honours create-only writes and compare-and-swap, which several
/// writers sharing it rely on (`format-spec/s3.md`): a second create-only write of a key
/// must not replace it, and a compare-and-swap with a stale version must not write. The
/// probe object is `tmp/probe-<random>` (never listed), deleted afterwards.
///
/// # Errors
/// Store errors; `Ok(Err(why))` when the store ignores a precondition.
pub fn probe_conditional_writes(store: &dyn Backend) -> Result<Result<(), String>, BackendError> {
    let name: [u8; 8] = crate::crypto::random_array().map_err(|_| BackendError::Unsupported {
        store: store.describe(),
        what: "draw a random probe name".into(),
    })?;
    let key = format!("tmp/probe-{}", hex::encode(name));
    let verdict = (|| {
        store.put(&key, b"first", PutMode::CreateOnly)?;
        let second = store.put(&key, b"second", PutMode::CreateOnly)?;
        if second != PutOutcome::AlreadyExisted || store.get(&key)? != b"first" {
            return Ok(Err(
                "a second create-only write (If-None-Match: *) replaced the object".to_string()
            ));
        }
        let stale = store.put_if_match(&key, b"third", "\"amber-probe-stale-version\"")?;
        if stale != CasOutcome::Conflict || store.get(&key)? != b"first" {
            return Ok(Err(
                "a compare-and-swap with a stale version (If-Match) wrote".to_string()
            ));
        }
        Ok(Ok(()))
    })();
    let _ = store.delete(&key);
    verdict
}
