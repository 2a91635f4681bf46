//! The store: a flat namespace of immutable objects, behind a small trait.
//!
//! Object keys are `/`-separated ASCII paths such as `data/ab/ab12…`. Every method is
//! synchronous and may block; callers keep it off async executors.

pub mod fault;
pub mod local;
pub mod memory;

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

/// One listed object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Its key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
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

    /// The object's size, or `None` when absent.
    ///
    /// # Errors
    /// I/O.
    fn head(&self, key: &str) -> Result<Option<u64>, BackendError>;

    /// Every object whose key starts with `prefix`, in key order.
    ///
    /// # Errors
    /// I/O.
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, BackendError>;

    /// Deletes an object; deleting an absent key is not an error (idempotent).
    ///
    /// # Errors
    /// I/O.
    fn delete(&self, key: &str) -> Result<(), BackendError>;

    /// Where the store is, for messages (a directory, a URL).
    fn describe(&self) -> String {
        format!("{self:?}")
    }
}

/// A shared backend.
pub type DynBackend = Arc<dyn Backend>;

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

#[cfg(test)]
pub(crate) mod conformance {
    //! One suite every backend passes.
    use super::*;

    pub(crate) fn run(b: &dyn Backend) {
        assert_eq!(b.head("data/aa/x").unwrap(), None);
        assert!(matches!(b.get("data/aa/x"), Err(BackendError::NotFound { .. })));
        assert_eq!(
            b.put("data/aa/x", b"hello", PutMode::CreateOnly).unwrap(),
            PutOutcome::Created
        );
        assert_eq!(
            b.put("data/aa/x", b"other", PutMode::CreateOnly).unwrap(),
            PutOutcome::AlreadyExisted
        );
        assert_eq!(b.get("data/aa/x").unwrap(), b"hello");
        assert_eq!(b.get_range("data/aa/x", 1, 3).unwrap(), b"ell");
        assert!(matches!(
            b.get_range("data/aa/x", 3, 5),
            Err(BackendError::OutOfRange { .. })
        ));
        assert_eq!(b.head("data/aa/x").unwrap(), Some(5));
        b.put("data/bb/y", b"12", PutMode::CreateOnly).unwrap();
        b.put("meta/cc/z", b"1", PutMode::CreateOnly).unwrap();
        let keys: Vec<String> = b.list("data/").unwrap().into_iter().map(|o| o.key).collect();
        assert_eq!(keys, vec!["data/aa/x".to_string(), "data/bb/y".to_string()]);
        assert_eq!(b.list("nothing/").unwrap(), vec![]);
        assert_eq!(b.put("config", b"v1", PutMode::Overwrite).unwrap(), PutOutcome::Created);
        assert_eq!(b.put("config", b"v2", PutMode::Overwrite).unwrap(), PutOutcome::Created);
        assert_eq!(b.get("config").unwrap(), b"v2");
        b.delete("data/aa/x").unwrap();
        b.delete("data/aa/x").unwrap();
        assert_eq!(b.head("data/aa/x").unwrap(), None);
        assert!(b.put("../escape", b"", PutMode::CreateOnly).is_err());
        assert!(b.get("/abs").is_err());
    }
}
