//! # amber-engine
//!
//! Amber's storage engine: content-defined chunking with a keyed gear table, keyed BLAKE3
//! ids, zstd, AES-256-GCM sealing, pack files with encrypted directories, Merkle tree
//! manifests, a RocksDB index that is only a cache, and the operations built on them
//! (tree snapshot, restore, diff).
//!
//! Layers (each uses only those above it in this list):
//! `error`, `id`, `hash` → `chunker`, `crypto`, `compress` → `format` → `backend` →
//! `repo` → `ops`.
//!
//! ```no_run
//! use std::sync::Arc;
//! use amber_engine::backend::local::LocalBackend;
//! use amber_engine::repo::{InitOptions, Repository};
//! use amber_engine::ops::ingest::{snapshot_tree, TreeOptions};
//!
//! # fn main() -> Result<(), amber_engine::Error> {
//! let store = Arc::new(LocalBackend::new("/srv/amber"));
//! let repo = Repository::init(store, "/srv/amber/cache".as_ref(), b"passphrase", &InitOptions::default())?;
//! let summary = snapshot_tree(&repo, "/home/jovyan".as_ref(), &TreeOptions::default())?;
//! println!("snapshot {}", summary.id);
//! # Ok(())
//! # }
//! ```

pub mod backend;
pub mod chunker;
pub mod compress;
pub mod crypto;
pub mod error;
pub mod format;
pub mod hash;
pub mod id;
pub mod ops;
pub mod repo;

pub use error::{Error, Result};
