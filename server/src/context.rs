//! Opening the repository from the global options.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use amber_engine::backend::local::LocalBackend;
use amber_engine::crypto::KdfParams;
use amber_engine::repo::Repository;
use anyhow::{Context, Result, bail};

use crate::cli::{Global, KdfArgs};

/// Reads a passphrase from a file (first line) or an environment variable.
pub fn passphrase(file: Option<&Path>, var: &str) -> Result<Vec<u8>> {
    if let Some(path) = file {
        let text = std::fs::read(path).with_context(|| format!("cannot read password file {}", path.display()))?;
        let line = text.split(|&b| b == b'\n').next().unwrap_or_default();
        return Ok(line.strip_suffix(b"\r").unwrap_or(line).to_vec());
    }
    match std::env::var_os(var) {
        Some(v) => Ok(v.into_encoded_bytes()),
        None => bail!("no passphrase: set {var} or pass a password file"),
    }
}

/// The cache directory for a repository.
pub fn cache_dir(global: &Global) -> PathBuf {
    global.cache_dir.clone().unwrap_or_else(|| global.repo.join("cache"))
}

/// The local store at `--repo`.
pub fn backend(global: &Global) -> Arc<LocalBackend> {
    Arc::new(LocalBackend::new(&global.repo))
}

/// Opens the repository, checking first that it exists.
pub fn open(global: &Global) -> Result<Repository> {
    if !global.repo.join("config").exists() {
        bail!(
            "no repository at {}: run `amber init` first (or set --repo / AMBER_REPO)",
            global.repo.display()
        );
    }
    let pass = passphrase(global.password_file.as_deref(), "AMBER_PASSWORD")?;
    Ok(Repository::open(backend(global), &cache_dir(global), &pass)?)
}

/// KDF parameters from the command line.
pub fn kdf(args: &KdfArgs) -> KdfParams {
    KdfParams {
        memory_kib: args.kdf_memory_mib.saturating_mul(1024),
        iterations: args.kdf_iterations,
        parallelism: 1,
    }
}

/// `user@host` for key slot labels.
pub fn default_label() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    format!("{user}@{}", amber_engine::ops::ingest::hostname())
}
