//! The engine's error type: one enum per layer, converted upward with `From`.

use std::path::PathBuf;

use crate::backend::BackendError;
use crate::format::FormatError;

/// Errors from the cryptographic layer (key derivation, sealing, opening).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// An authenticated decryption failed: wrong key, or the bytes were changed.
    #[error("authentication failed for {what}: the data was changed or the key is wrong")]
    Authentication {
        /// What was being opened (for example `blob 1a2b…`).
        what: String,
    },
    /// No key slot could be opened with the given passphrase.
    #[error("wrong passphrase: no key slot of this repository opens with it")]
    WrongPassphrase,
    /// Key derivation failed (bad parameters).
    #[error("key derivation failed: {0}")]
    Kdf(String),
    /// The system random generator failed.
    #[error("the system random number generator failed")]
    Random,
}

/// Everything that can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A stored object did not decode.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// Sealing or opening failed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// The store failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The local index (RocksDB) failed.
    #[error("index at {path}: {message}; it is a cache: `amber index rebuild` recreates it")]
    Index {
        /// Where the index lives.
        path: PathBuf,
        /// What RocksDB said.
        message: String,
    },
    /// Another process is writing to the index (it holds RocksDB's lock).
    #[error("the index at {} is in use by another amber process", .0.display())]
    IndexBusy(PathBuf),
    /// An object read back from the store does not have the id it is filed under.
    #[error("corrupt {kind} {id}: {detail}")]
    Corrupt {
        /// Kind of object (blob, pack, snapshot, ...).
        kind: &'static str,
        /// Its id, hex.
        id: String,
        /// What was wrong.
        detail: String,
    },
    /// A blob the manifest refers to is not in the index.
    #[error("blob {0} is not in the index: run `amber index rebuild`; if it stays missing the data is lost")]
    MissingBlob(String),
    /// Local file-system access failed.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// There is no repository at the given place.
    #[error("no repository at {0}: run `amber init` first")]
    NoRepository(String),
    /// A repository already exists at the given place.
    #[error("a repository already exists at {0}")]
    AlreadyExists(String),
    /// A snapshot name matched nothing.
    #[error("no snapshot matches {0:?}")]
    NoSuchSnapshot(String),
    /// A snapshot prefix matched several snapshots.
    #[error("{prefix:?} is ambiguous: it matches {count} snapshots; give more characters")]
    AmbiguousSnapshot {
        /// The prefix given.
        prefix: String,
        /// How many snapshots it matches.
        count: usize,
    },
    /// A path inside a snapshot does not exist.
    #[error("no path {0:?} in the snapshot")]
    NoSuchPath(String),
    /// Another process changed the vault under this one (a compaction removed a pack
    /// that this operation relies on): nothing was committed; running it again works.
    #[error("{0}")]
    Conflict(String),
    /// An argument was out of its allowed range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// Input that would need more memory or space than the engine allows for it.
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),
    /// A background worker stopped (its error is reported separately).
    #[error("a pipeline worker stopped unexpectedly: {0}")]
    Pipeline(String),
    /// The writer refused further writes after an earlier failure.
    #[error("the repository writer is poisoned after an earlier write failure: {0}")]
    Poisoned(String),
}

/// Convenience alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
