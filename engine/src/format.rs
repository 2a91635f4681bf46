//! Pure byte layouts of every stored object: bytes in, structs out, no I/O.
//!
//! Each layout is specified in `format-spec/`; the golden vectors there are read by the tests.

pub mod audit;
pub mod blob;
pub mod chunklist;
pub mod codec;
pub mod condemn;
pub mod config;
pub mod keyslot;
pub mod layout;
pub mod pack;
pub mod recipe;
pub mod segment;
pub mod snapshot;
pub mod tarhdr;
pub mod tree;

/// A stored object did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// The bytes ended before the named field.
    #[error("truncated: the bytes end inside {0}")]
    Truncated(&'static str),
    /// The object does not start with the expected magic.
    #[error("bad magic: expected {expected:?}")]
    BadMagic {
        /// The magic expected.
        expected: &'static str,
    },
    /// The object has a version this build cannot read.
    #[error("unsupported {object} version {version}: this build reads version {supported}")]
    UnsupportedVersion {
        /// Which object.
        object: &'static str,
        /// The version found.
        version: u16,
        /// The version this build reads.
        supported: u16,
    },
    /// A field holds a value outside its allowed range.
    #[error("invalid {field}: {detail}")]
    Invalid {
        /// Which field.
        field: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// Bytes were left over after the object.
    #[error("{0} trailing bytes after the object")]
    TrailingBytes(usize),
    /// Text that should have been 64 hex digits was not.
    #[error("not a 64-digit hex id: {0:?}")]
    BadHex(String),
}

impl FormatError {
    pub(crate) fn invalid(field: &'static str, detail: impl Into<String>) -> Self {
        FormatError::Invalid {
            field,
            detail: detail.into(),
        }
    }
}
