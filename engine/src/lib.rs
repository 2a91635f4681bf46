//! # amber-engine
//!
//! Amber's storage engine: content-defined chunking with a keyed gear table, keyed BLAKE3
//! ids, zstd, AES-256-GCM sealing, pack files with encrypted directories, Merkle tree
//! manifests, a RocksDB index that is only a cache, and the operations built on them
//! (tree snapshot, restore, diff).
//!
//! Layers (each uses only those above it in this list):
//! `error`, `id`, `hash` → `chunker`, `crypto`, `compress` → `format` → `backend` →
//! `store` (stores named by URL) → `repo` → `ops`.
//!
//! ```no_run
//! use amber_engine::backend::s3::S3Options;
//! use amber_engine::repo::{InitOptions, Repository};
//! use amber_engine::store::{StoreUrl, open_store};
//! use amber_engine::ops::ingest::{snapshot_tree, TreeOptions};
//!
//! # fn main() -> Result<(), amber_engine::Error> {
//! let url = StoreUrl::parse("s3://lab-bucket/amber".as_ref())?; // or a directory
//! let store = open_store(&url, &S3Options::from_env().unwrap_or_default())?;
//! let repo = Repository::init(store, "/var/cache/amber".as_ref(), b"passphrase", &InitOptions::default())?;
//! let summary = snapshot_tree(&repo, "/home/jovyan".as_ref(), &TreeOptions::default())?;
//! println!("snapshot {}", summary.id);
//! # Ok(())
//! # }
//! ```

pub mod backend;
pub mod chunker;
pub mod civil;
pub mod compress;
pub mod crypto;
pub mod error;
pub mod format;
pub mod hash;
pub mod id;
pub mod ops;
pub mod repo;
pub mod store;

pub use error::{Error, Result};
