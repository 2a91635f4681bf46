//! Stores named by URL: the one entry point that turns `--repo`, `AMBER_REPO` or a server's
//! `store = "…"` into a backend.
//!
//! - a path, or `file:///path`: a local directory ([`LocalBackend`]);
//! - `s3://bucket` or `s3://bucket/prefix`: the objects under `prefix/` of an S3 bucket
//!   ([`S3Backend`]).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::backend::DynBackend;
use crate::backend::local::LocalBackend;
use crate::backend::prefix::PrefixBackend;
use crate::backend::s3::{S3Backend, S3Options};
use crate::error::{Error, Result};

/// Where a store is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreUrl {
    /// A local directory.
    Local(PathBuf),
    /// The objects under `prefix` (empty, or a valid key without a trailing `/`) of a bucket.
    S3 {
        /// The bucket.
        bucket: String,
        /// The key prefix.
        prefix: String,
    },
}

impl StoreUrl {
    /// Parses a store name given as bytes (a path may be any bytes).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an `s3://` URL without a bucket or with a prefix that
    /// is not a valid key, and for other URL schemes.
    pub fn parse(name: &OsStr) -> Result<StoreUrl> {
        let bytes = name.as_bytes();
        if let Some(rest) = bytes.strip_prefix(b"s3://") {
            let rest = std::str::from_utf8(rest)
                .map_err(|_| Error::InvalidArgument(format!("store URL {name:?} is not UTF-8")))?;
            return parse_s3(rest);
        }
        if let Some(rest) = bytes.strip_prefix(b"file://") {
            return Ok(StoreUrl::Local(PathBuf::from(OsStr::from_bytes(rest))));
        }
        let scheme_end = bytes.windows(3).position(|w| w == b"://");
        let looks_like_url = scheme_end.is_some_and(|i| {
            bytes
                .get(..i)
                .is_some_and(|s| !s.is_empty() && s.iter().all(u8::is_ascii_alphanumeric))
        });
        if looks_like_url {
            return Err(Error::InvalidArgument(format!(
                "store {} has a scheme Amber does not know: use a path, file:///path or s3://bucket/prefix",
                name.to_string_lossy()
            )));
        }
        Ok(StoreUrl::Local(PathBuf::from(name)))
    }

    /// The store under `sub` (a valid key) of this one.
    pub fn join(&self, sub: &str) -> StoreUrl {
        match self {
            StoreUrl::Local(path) => StoreUrl::Local(path.join(sub)),
            StoreUrl::S3 { bucket, prefix } => StoreUrl::S3 {
                bucket: bucket.clone(),
                prefix: if prefix.is_empty() {
                    sub.to_string()
                } else {
                    format!("{prefix}/{sub}")
                },
            },
        }
    }

    /// The directory of a local store.
    pub fn local_path(&self) -> Option<&Path> {
        match self {
            StoreUrl::Local(path) => Some(path),
            StoreUrl::S3 { .. } => None,
        }
    }
}

fn parse_s3(rest: &str) -> Result<StoreUrl> {
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let prefix = prefix.trim_matches('/');
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if !bucket_ok {
        return Err(Error::InvalidArgument(format!(
            "s3://{rest}: {bucket:?} is not a bucket name (3 to 63 of a-z 0-9 . -)"
        )));
    }
    if !prefix.is_empty() && crate::backend::validate_key(prefix).is_err() {
        return Err(Error::InvalidArgument(format!(
            "s3://{rest}: the prefix {prefix:?} must be /-separated parts of A-Z a-z 0-9 - _ ."
        )));
    }
    Ok(StoreUrl::S3 {
        bucket: bucket.to_string(),
        prefix: prefix.to_string(),
    })
}

impl std::fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreUrl::Local(path) => write!(f, "{}", path.display()),
            StoreUrl::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            StoreUrl::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

/// Opens the store `url` names. A local directory need not exist yet (`init` creates it);
/// a bucket is not contacted until the first request.
///
/// # Errors
/// Backend set-up errors.
pub fn open_store(url: &StoreUrl, s3: &S3Options) -> Result<DynBackend> {
    Ok(match url {
        StoreUrl::Local(path) => Arc::new(LocalBackend::new(path)),
        StoreUrl::S3 { bucket, prefix } => Arc::new(S3Backend::connect(bucket, prefix, s3.clone())?),
    })
}

/// The part of `store` under `sub`: one vault of a server's store, or its shared state.
///
/// # Errors
/// [`Error::InvalidArgument`] for a `sub` that is not a valid key.
pub fn sub_store(store: &DynBackend, sub: &str) -> Result<DynBackend> {
    let view = PrefixBackend::new(store.clone(), sub)
        .map_err(|_| Error::InvalidArgument(format!("{sub:?} is not a valid store prefix")))?;
    Ok(Arc::new(view))
}

#[cfg(test)]
mod tests {
    use super::StoreUrl;
    use std::ffi::OsStr;
    use std::path::PathBuf;

    #[test]
    fn urls_parse_and_print_back() {
        let s3 = StoreUrl::parse(OsStr::new("s3://lab-bucket/amber/prod/")).unwrap();
        assert_eq!(
            s3,
            StoreUrl::S3 {
                bucket: "lab-bucket".into(),
                prefix: "amber/prod".into()
            }
        );
        assert_eq!(s3.to_string(), "s3://lab-bucket/amber/prod");
        assert_eq!(s3.join("vaults/a").to_string(), "s3://lab-bucket/amber/prod/vaults/a");
        assert_eq!(
            StoreUrl::parse(OsStr::new("s3://b3k")).unwrap().join("x").to_string(),
            "s3://b3k/x"
        );
        assert_eq!(
            StoreUrl::parse(OsStr::new("file:///srv/amber")).unwrap(),
            StoreUrl::Local(PathBuf::from("/srv/amber"))
        );
        assert_eq!(
            StoreUrl::parse(OsStr::new("./amber-data")).unwrap(),
            StoreUrl::Local(PathBuf::from("./amber-data"))
        );
        for bad in ["s3://", "s3://Upper/x", "s3://ok-bucket/../x", "gs://bucket/x"] {
            assert!(StoreUrl::parse(OsStr::new(bad)).is_err(), "{bad}");
        }
    }
}
